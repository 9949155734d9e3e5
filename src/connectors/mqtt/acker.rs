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

use crate::events::{self, ConsumerWindow};

/// Acknowledges one message once given back to the `Acker`; dropping it leaves the message
/// unacknowledged, so the broker redelivers it.
pub struct AckToken {
    pub(super) qos: QoS,
    pub(super) packet_id: u16,
    pub(super) epoch: u64,
    pub(super) _slot: Slot,
}

/// One message's place in the consumer's in-flight window (and its bytes), given back (waking
/// the poll task) when dropped.
pub(super) struct Slot {
    pub(super) shared: Arc<Shared>,
    pub(super) bytes: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.shared
            .in_flight_bytes
            .fetch_sub(self.bytes, Ordering::AcqRel);
        self.shared.window.left();
        self.shared.wake.notify_one();
    }
}

/// State shared by a consumer's poll task and its acker.
pub(super) struct Shared {
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
}

impl Shared {
    pub(super) fn new(window: ConsumerWindow) -> Self {
        Shared {
            epoch: Mutex::new(0),
            closing: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            in_flight_bytes: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            window,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Whether the window is full: `receive_maximum` messages, or `max_inflight_bytes` of
    /// payload (one message larger than that alone is let in).
    pub(super) fn window_full(&self, receive_maximum: usize, max_bytes: usize) -> bool {
        let held = self.in_flight.load(Ordering::Acquire);
        held >= receive_maximum
            || (held > 0 && self.in_flight_bytes.load(Ordering::Acquire) >= max_bytes)
    }

    /// Takes a received message's place in the window.
    pub(super) fn hold(self: &Arc<Self>, bytes: usize) -> Slot {
        let held = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.in_flight_bytes.fetch_add(bytes, Ordering::AcqRel);
        let most = self.most.fetch_max(held, Ordering::AcqRel) < held;
        self.window.held(most.then_some(held));
        Slot {
            shared: self.clone(),
            bytes,
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
                let current = self.shared.epoch();
                if *current != epoch {
                    return false;
                }
                match self.client.try_ack(&publish) {
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
