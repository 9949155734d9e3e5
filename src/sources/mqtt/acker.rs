//! Acknowledging what a consumer received. Each delivery carries the connection epoch it
//! arrived on, and its PUBACK is queued only if that epoch is still current. Checking and
//! queuing happen under one lock, which the poll task also takes when a connection fails, to
//! bump the epoch and purge PUBACKs still queued in rumqttc: so an ack for a message of an
//! earlier connection is never written on a later one (its packet id may name another message
//! there); the broker redelivers that message instead.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::Publish;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ClientError};
use tokio::sync::Notify;

use crate::events;

/// Acknowledges one message once given back to the `Acker`; dropping it leaves the message
/// unacknowledged, so the broker redelivers it.
pub struct AckToken {
    pub(super) qos: QoS,
    pub(super) packet_id: u16,
    pub(super) epoch: u64,
    pub(super) _slot: Slot,
}

/// One place in the consumer's in-flight window, given back (waking the poll task) when dropped.
pub(super) struct Slot(pub(super) Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.wake.notify_one();
    }
}

/// State shared by a consumer's poll task and its acker.
pub(super) struct Shared {
    acks: Mutex<AckState>,
    pub(super) closing: AtomicBool,
    /// Messages received and not yet acknowledged (nor given up).
    pub(super) in_flight: AtomicUsize,
    pub(super) wake: Notify,
}

pub(super) struct AckState {
    /// Bumped by the poll task whenever the connection is lost.
    pub(super) epoch: u64,
    /// Acks queued in rumqttc's request channel and not yet written.
    pub(super) queued: usize,
}

impl Shared {
    pub(super) fn new() -> Self {
        Shared {
            acks: Mutex::new(AckState {
                epoch: 0,
                queued: 0,
            }),
            closing: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            wake: Notify::new(),
        }
    }

    pub(super) fn acks(&self) -> MutexGuard<'_, AckState> {
        // The lock guards two counters; a panic while holding it leaves them usable.
        self.acks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How long an ack keeps trying a full request channel before leaving the message to be
/// redelivered (the poll task drains it continuously, so this means the consumer is gone).
const ACK_PATIENCE: Duration = Duration::from_secs(10);

/// Sends a consumer's acks, for the connection each message arrived on.
pub struct Acker {
    pub(super) client: AsyncClient,
    pub(super) shared: Arc<Shared>,
    pub(super) route: Arc<str>,
}

impl Acker {
    /// Queues the PUBACK for `token`; false when the ack was dropped because the connection
    /// changed since the message arrived.
    async fn ack_one(&self, token: AckToken) -> bool {
        let AckToken {
            qos,
            packet_id,
            epoch,
            _slot,
        } = token;
        if qos == QoS::AtMostOnce {
            return true;
        }
        let mut publish = Publish::new("", qos, Bytes::new(), None);
        publish.pkid = packet_id;
        let started = tokio::time::Instant::now();
        loop {
            {
                let mut acks = self.shared.acks();
                if acks.epoch != epoch {
                    return false;
                }
                match self.client.try_ack(&publish) {
                    Ok(()) => {
                        acks.queued += 1;
                        break;
                    }
                    Err(ClientError::TryRequest(_)) if started.elapsed() < ACK_PATIENCE => {}
                    Err(e) => {
                        events::AckFailed {
                            route: &self.route,
                            error: &e.to_string(),
                        }
                        .emit();
                        return false;
                    }
                }
            }
            // The request channel is full: the poll task is draining it.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(_slot); // wakes the poll task, which polls to write the ack
        true
    }
}

#[async_trait]
impl crate::sources::Acker for Acker {
    type Token = AckToken;

    async fn ack(&self, released: Vec<(AckToken, bool)>) {
        let mut stale = 0;
        for (token, done) in released {
            // A message given up keeps no ack: its token is dropped and the broker redelivers.
            if done && !self.ack_one(token).await {
                stale += 1;
            }
        }
        if stale > 0 {
            events::StaleAcks {
                route: &self.route,
                count: stale,
            }
            .emit();
        }
    }

    /// Asks the client to disconnect, keeping its session, once the queued acks are written.
    async fn close(&self) {
        self.shared.closing.store(true, Ordering::Release);
        let _ = self.client.disconnect().await;
    }
}
