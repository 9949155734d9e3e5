//! The token each delivery carries to its route's `Acker`: the message's packet id and epoch,
//! and its place in the consumer's window. A message that reached several routes through one
//! PUBLISH (a connection the routes share, their subscriptions overlapping) carries a joint
//! token: each route settles its share, and the PUBACK goes out once every route has delivered
//! it; if any gave it up, none does.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rumqttc::v5::mqttbytes::QoS;

use super::Shared;

/// Acknowledges one message once given back to the `Acker`; dropping it leaves the message
/// unacknowledged, so the broker redelivers it.
pub struct AckToken(Share);

enum Share {
    Whole(Pending),
    Joint(JointShare),
}

/// What acknowledging a message takes: its packet id on the connection it arrived on.
pub(in crate::connectors::mqtt) struct Pending {
    pub(in crate::connectors::mqtt) qos: QoS,
    pub(in crate::connectors::mqtt) packet_id: u16,
    pub(in crate::connectors::mqtt) epoch: u64,
    pub(in crate::connectors::mqtt) _slot: Slot,
}

impl AckToken {
    /// The token of a message one route takes.
    pub(in crate::connectors::mqtt) fn whole(pending: Pending) -> Self {
        AckToken(Share::Whole(pending))
    }

    /// The tokens of a message `routes` routes take (2 or more): one share each.
    pub(in crate::connectors::mqtt) fn joint(pending: Pending, routes: usize) -> Vec<AckToken> {
        let joint = Arc::new(Joint {
            pending: Mutex::new(Some(pending)),
            left: AtomicUsize::new(routes),
            failed: AtomicBool::new(false),
        });
        let share = || {
            AckToken(Share::Joint(JointShare {
                joint: joint.clone(),
                settled: false,
            }))
        };
        (0..routes).map(|_| share()).collect()
    }

    /// Settles the token: what to acknowledge now, if anything (the last share of a message
    /// every route delivered). A message given up is counted on its connection as stranded.
    pub(super) fn settle(self, done: bool) -> Option<Pending> {
        match self.0 {
            Share::Whole(p) if done => Some(p),
            Share::Whole(p) => {
                p.strand();
                None
            }
            Share::Joint(mut share) => share.settle(done),
        }
    }

    /// The message's acknowledgement, when this token is all of it.
    pub(in crate::connectors::mqtt) fn into_pending(self) -> Option<Pending> {
        match self.0 {
            Share::Whole(p) => Some(p),
            Share::Joint(_) => None,
        }
    }
}

impl Pending {
    /// Given up: the broker sends it again on the session's next connection.
    fn strand(self) {
        self._slot.shared.stranded.fetch_add(1, Ordering::AcqRel);
    }
}

/// A message several routes take from one PUBLISH.
struct Joint {
    pending: Mutex<Option<Pending>>,
    /// Shares not settled yet.
    left: AtomicUsize,
    /// A route gave its share up: the message is not acknowledged.
    failed: AtomicBool,
}

/// One route's share of a joint message; dropped unsettled, it counts as given up.
struct JointShare {
    joint: Arc<Joint>,
    settled: bool,
}

impl JointShare {
    fn settle(&mut self, done: bool) -> Option<Pending> {
        self.settled = true;
        if !done {
            self.joint.failed.store(true, Ordering::Release);
        }
        if self.joint.left.fetch_sub(1, Ordering::AcqRel) != 1 {
            return None;
        }
        let pending = self
            .joint
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        match self.joint.failed.load(Ordering::Acquire) {
            false => Some(pending),
            true => {
                pending.strand();
                None
            }
        }
    }
}

impl Drop for JointShare {
    fn drop(&mut self) {
        if !self.settled {
            self.settle(false);
        }
    }
}

/// One message's place in the consumer's in-flight window (and its bytes), given back (waking
/// the poll task) when dropped.
pub(in crate::connectors::mqtt) struct Slot {
    pub(super) shared: Arc<Shared>,
    pub(super) bytes: usize,
    /// Its part of the memory budget.
    pub(super) cost: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.shared
            .in_flight_bytes
            .fetch_sub(self.bytes, Ordering::AcqRel);
        self.shared.share.give(self.cost);
        self.shared.window.left();
        self.shared.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::mqtt::acker::Shared;
    use crate::events::ConsumerWindow;
    use crate::flow::Budget;
    use rumqttc::v5::AsyncClient;

    fn pending(shared: &Arc<Shared>, packet_id: u16) -> Pending {
        Pending {
            qos: QoS::AtLeastOnce,
            packet_id,
            epoch: 0,
            _slot: shared.hold(10, 30),
        }
    }

    fn shared() -> Arc<Shared> {
        let options = rumqttc::v5::MqttOptions::new("test", "127.0.0.1", 1883);
        let (client, _eventloop) = AsyncClient::new(options, 8);
        let budget = Budget::unbounded();
        Arc::new(Shared::new(client, ConsumerWindow::new("test", 0), &budget))
    }

    #[tokio::test]
    async fn a_joint_message_is_acknowledged_once_every_route_delivered_it() {
        let shared = shared();
        let mut shares = AckToken::joint(pending(&shared, 7), 3);
        let last = shares.pop().unwrap();
        for share in shares {
            assert!(share.settle(true).is_none(), "acknowledged before the last");
        }
        let p = last.settle(true).expect("the last share acknowledges");
        assert_eq!(p.packet_id, 7);
        assert_eq!(
            shared.in_flight.load(Ordering::Acquire),
            1,
            "held until acked"
        );
        drop(p);
        assert_eq!(shared.in_flight.load(Ordering::Acquire), 0);
        assert_eq!(shared.stranded.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_joint_message_one_route_gave_up_is_not_acknowledged() {
        let shared = shared();
        let mut shares = AckToken::joint(pending(&shared, 8), 2);
        // One route gives its share up (or drops it); the other delivers last.
        drop(shares.remove(0));
        assert!(shares.pop().unwrap().settle(true).is_none());
        assert_eq!(
            shared.stranded.load(Ordering::Acquire),
            1,
            "left for the broker"
        );
        assert_eq!(
            shared.in_flight.load(Ordering::Acquire),
            0,
            "its place freed"
        );
        // A whole token given up is stranded too; a delivered one is acknowledged.
        assert!(AckToken::whole(pending(&shared, 9)).settle(false).is_none());
        assert_eq!(shared.stranded.load(Ordering::Acquire), 2);
        assert!(AckToken::whole(pending(&shared, 10)).settle(true).is_some());
    }
}
