//! Acknowledging what a consumer received. Each delivery carries the connection epoch it
//! arrived on, and its PUBACK is queued only if that epoch is still current. Checking and
//! queuing happen under one lock, which the poll task also takes when a connection fails, to
//! bump the epoch and purge PUBACKs still queued in rumqttc: so an ack for a message of an
//! earlier connection is never written on a later one (its packet id may name another message
//! there); the broker redelivers that message instead. The tokens a delivery carries, whole or
//! shared between routes, are in `token`.

mod token;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::Publish;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ClientError};
use tokio::sync::Notify;

use crate::events::{self, ConsumerWindow};
use crate::flow::{budget, Budget};
pub use token::AckToken;
pub(super) use token::{Pending, Slot};

/// State shared by a consumer connection's poll task and the ackers of its routes.
pub struct Shared {
    /// The connection's client, which writes the acks.
    client: AsyncClient,
    /// The connection epoch, bumped by the poll task whenever the connection is lost.
    epoch: Mutex<u64>,
    pub(super) closing: AtomicBool,
    /// Messages received and not yet acknowledged (nor given up).
    pub(super) in_flight: AtomicUsize,
    /// Their payload bytes.
    pub(super) in_flight_bytes: AtomicUsize,
    /// The most messages held at once since the consumer started (a route started again starts
    /// again from 0).
    pub(super) most: AtomicUsize,
    pub(super) window: ConsumerWindow,
    /// Notified when a message leaves the window: the event loop may read again.
    pub(super) wake: Arc<Notify>,
    /// Messages a route gave up on a connection routes share: the broker sends them again only
    /// on the session's next connection, which the pool then makes (`consumer::Connection`).
    pub(super) stranded: AtomicUsize,
    /// Asked to connect again (`consumer::Connection::reconnect`).
    pub(super) reconnecting: AtomicBool,
    /// The connection's part of the bridge's memory budget: its window's bytes.
    share: budget::Share,
    /// Messages received since the connection started.
    pub(super) received: AtomicUsize,
    /// The largest budget cost of a message it received (0 before the first).
    largest: AtomicUsize,
}

impl Shared {
    pub(super) fn new(client: AsyncClient, window: ConsumerWindow, budget: &Arc<Budget>) -> Self {
        let wake = Arc::new(Notify::new());
        Shared {
            share: budget.share(wake.clone()),
            largest: AtomicUsize::new(0),
            received: AtomicUsize::new(0),
            client,
            epoch: Mutex::new(0),
            closing: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            in_flight_bytes: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            window,
            wake,
            stranded: AtomicUsize::new(0),
            reconnecting: AtomicBool::new(false),
        }
    }

    /// Whether the window is full: `receive_maximum` messages, or `max_inflight_bytes` of
    /// payload, or the memory budget spent (one message larger than that alone is let in).
    pub(super) fn window_full(&self, receive_maximum: usize, max_bytes: usize) -> bool {
        let held = self.in_flight.load(Ordering::Acquire);
        held >= receive_maximum
            || (held > 0 && self.in_flight_bytes.load(Ordering::Acquire) >= max_bytes)
    }

    /// How many packets the connection may read now: none while the window is full
    /// (`window_full`), else as many of the largest messages seen as the memory budget has
    /// room for (at most `READ`), which is set aside for them.
    pub(super) fn may_read(&self, open: bool, receive_maximum: usize, max_bytes: usize) -> usize {
        if !open || self.window_full(receive_maximum, max_bytes) {
            self.share.release();
            return 0;
        }
        // Until a message showed how large they come, one packet at a time.
        match self.largest.load(Ordering::Acquire) {
            0 => self.share.reserve(1, budget::cost(0, 0)),
            largest => self.share.reserve(READ, largest),
        }
    }

    /// Takes a received message's place in the window (`bytes` of payload) and in the budget
    /// (`cost`).
    pub(super) fn hold(self: &Arc<Self>, bytes: usize, cost: usize) -> Slot {
        let held = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.in_flight_bytes.fetch_add(bytes, Ordering::AcqRel);
        self.share.take(cost);
        self.largest.fetch_max(cost, Ordering::AcqRel);
        self.received.fetch_add(1, Ordering::AcqRel);
        let most = self.most.fetch_max(held, Ordering::AcqRel) < held;
        self.window.held(most.then_some(held));
        Slot {
            shared: self.clone(),
            bytes,
            cost,
        }
    }

    /// The epoch, locked: acks are checked and queued under this lock, and the poll task bumps
    /// the epoch under it when a connection is lost.
    pub(super) fn epoch(&self) -> MutexGuard<'_, u64> {
        // A panic while holding it leaves the number usable.
        self.epoch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The most packets one read of the event loop brings (`vendor/rumqttc/PATCH.md`).
const READ: usize = 9;

/// How long an ack keeps trying a full request channel before leaving the message to be
/// redelivered (the poll task drains it continuously, so this means the consumer is gone).
const ACK_PATIENCE: Duration = Duration::from_secs(10);

/// Sends a route's acks, each on the connection its message arrived on.
pub struct Acker {
    pub(super) route: Arc<str>,
    /// The route's own connection, disconnected when the route closes the lane; a shared one
    /// goes on for the other routes.
    pub(super) own: Option<Arc<Shared>>,
}

impl Acker {
    /// Queues the PUBACK for `pending`; false when the ack was dropped because the connection
    /// changed since the message arrived.
    async fn ack_one(&self, pending: Pending) -> bool {
        let Pending {
            qos,
            packet_id,
            epoch,
            _slot,
        } = pending;
        if qos == QoS::AtMostOnce {
            return true;
        }
        let shared = &_slot.shared;
        let mut publish = Publish::new("", qos, Bytes::new(), None);
        publish.pkid = packet_id;
        let started = tokio::time::Instant::now();
        loop {
            {
                let current = shared.epoch();
                if *current != epoch {
                    return false;
                }
                match shared.client.try_ack(&publish) {
                    Ok(()) => break,
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
        drop(_slot); // may let the event loop read again
        true
    }
}

#[async_trait]
impl crate::flow::Acker for Acker {
    type Token = AckToken;

    async fn ack(&self, released: Vec<(AckToken, bool)>) {
        let mut stale = 0;
        for (token, done) in released {
            // A message given up keeps no ack: the broker redelivers it on the session's next
            // connection.
            if let Some(pending) = token.settle(done) {
                if !self.ack_one(pending).await {
                    stale += 1;
                }
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

    /// The route's own connection: asks the client to disconnect, keeping its session, once
    /// the queued acks are written. A shared connection goes on for the other routes.
    async fn close(&self) {
        if let Some(own) = &self.own {
            own.closing.store(true, Ordering::Release);
            let _ = own.client.disconnect().await;
        }
    }
}
