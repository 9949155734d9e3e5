//! One MQTT consumer: a client in a route's shared-subscription group.
//!
//! Delivery guarantee: at least once for QoS 1 and 2. The poll task only moves PUBLISH packets
//! into a channel; acknowledgements travel back through `Acker` after the sink has confirmed
//! the message. Each delivery carries the connection epoch it arrived on: after a reconnect,
//! acks for an older epoch are dropped (their packet ids may now name other messages), and the
//! broker redelivers those messages on the resumed session instead.
//!
//! Bounded memory: the bridge announces `receive_maximum` in CONNECT, but does not rely on the
//! broker honouring it (mosquitto 2.0 sends past it). It counts its own in-flight messages and,
//! when the window is full, the poll task stops reading so the backlog stays with the broker.
//! rumqttc writes our acks only while it is polled, so the poll task pauses only while no ack is
//! queued (it counts them: +1 when `Acker` queues one, -1 when rumqttc reports it written), and
//! never longer than half the keep-alive, so the connection stays up during a long stall. The
//! window can be overshot by what one socket read brings in; nothing is refused or dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use rumqttc::Outgoing;
use tokio::sync::{mpsc, Notify};

use super::options::Endpoint;
use crate::config::PublisherProperties;
use crate::events;
use crate::message::Message;

/// A received message and what is needed to acknowledge it.
pub struct Delivery {
    pub msg: Message,
    pub ack: AckToken,
}

/// Acknowledges one message once given back to `Acker::ack`; dropping it leaves the message
/// unacknowledged, so the broker redelivers it.
pub struct AckToken {
    qos: QoS,
    packet_id: u16,
    epoch: u64,
    _slot: Slot,
}

/// One place in the consumer's in-flight window, given back (waking the poll task) when dropped.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.wake.notify_one();
    }
}

/// State shared by a consumer's poll task and its acker.
struct Shared {
    epoch: AtomicU64,
    closing: AtomicBool,
    /// Messages received and not yet acknowledged (nor given up).
    in_flight: AtomicUsize,
    /// Acks queued in rumqttc's request channel and not yet written.
    acks_queued: AtomicUsize,
    wake: Notify,
}

/// Sends acks in the order it is given them, for the connection the message arrived on.
pub struct Acker {
    client: AsyncClient,
    shared: Arc<Shared>,
    route: Arc<str>,
}

impl Acker {
    /// Queues the PUBACK (QoS 1) or PUBREC (QoS 2) for `token`; returns false when the ack was
    /// dropped because the connection changed since the message arrived.
    pub async fn ack(&self, token: AckToken) -> bool {
        let AckToken {
            qos,
            packet_id,
            epoch,
            _slot,
        } = token;
        if qos == QoS::AtMostOnce {
            return true;
        }
        if epoch != self.shared.epoch.load(Ordering::Acquire) {
            return false;
        }
        let mut publish = Publish::new("", qos, Bytes::new(), None);
        publish.pkid = packet_id;
        if let Err(e) = self.client.ack(&publish).await {
            events::AckFailed {
                route: &self.route,
                error: &e.to_string(),
            }
            .emit();
            return false;
        }
        // Counted before the slot is given back, so the poll task, once woken, polls to write it.
        self.shared.acks_queued.fetch_add(1, Ordering::AcqRel);
        drop(_slot);
        true
    }

    /// Asks the client to disconnect, keeping its session, once the queued acks are written.
    pub async fn disconnect(&self) {
        self.shared.closing.store(true, Ordering::Release);
        let _ = self.client.disconnect().await;
    }
}

pub struct ConsumerSpec {
    pub route: Arc<str>,
    pub client_id: String,
    pub filters: Vec<String>,
    pub share_group: String,
    pub qos: QoS,
    pub receive_maximum: usize,
    pub publisher: PublisherProperties,
}

/// Starts a consumer: returns its deliveries, its acker and the poll task.
pub fn start(
    endpoint: &Endpoint,
    spec: ConsumerSpec,
) -> (
    mpsc::UnboundedReceiver<Delivery>,
    Acker,
    tokio::task::JoinHandle<()>,
) {
    let options = endpoint.consumer_options(&spec.client_id);
    // Room for every ack the in-flight window can produce, plus control packets.
    let (client, eventloop) = AsyncClient::new(options, spec.receive_maximum + 64);
    // Unbounded on purpose: the poll task must never wait on it; the window bounds what is in it.
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        epoch: AtomicU64::new(0),
        closing: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        acks_queued: AtomicUsize::new(0),
        wake: Notify::new(),
    });
    let acker = Acker {
        client: client.clone(),
        shared: shared.clone(),
        route: spec.route.clone(),
    };
    let poller = Poller {
        keep_alive: endpoint.keep_alive(),
        spec,
        client,
        shared,
        tx,
        address: endpoint.address(),
    };
    let task = tokio::spawn(poller.run(eventloop));
    (rx, acker, task)
}

struct Poller {
    spec: ConsumerSpec,
    client: AsyncClient,
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Delivery>,
    keep_alive: Duration,
    address: String,
}

impl Poller {
    async fn run(self, mut eventloop: EventLoop) {
        let mut backoff = Duration::from_millis(100);
        loop {
            self.wait_for_room().await;
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(publish))) => self.on_publish(publish),
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    backoff = Duration::from_millis(100);
                    self.on_connack(ack.session_present);
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => self.on_suback(&ack.return_codes),
                Ok(Event::Incoming(Packet::Disconnect(d))) => {
                    let reason = format!("broker disconnected: {:?}", d.reason_code);
                    events::ConsumerDisconnected {
                        route: &self.spec.route,
                        client_id: &self.spec.client_id,
                        error: &reason,
                    }
                    .emit();
                }
                Ok(Event::Outgoing(Outgoing::PubAck(_) | Outgoing::PubRec(_))) => {
                    let _ = self.shared.acks_queued.fetch_update(
                        Ordering::AcqRel,
                        Ordering::Acquire,
                        |n| n.checked_sub(1),
                    );
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    // rumqttc discards queued PUBACKs on a lost connection.
                    self.shared.acks_queued.store(0, Ordering::Release);
                    self.shared.epoch.fetch_add(1, Ordering::AcqRel);
                    if self.shared.closing.load(Ordering::Acquire) {
                        break;
                    }
                    let error = format!("{e} (broker {})", self.address);
                    events::ConsumerDisconnected {
                        route: &self.spec.route,
                        client_id: &self.spec.client_id,
                        error: &error,
                    }
                    .emit();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Backpressure: while the window is full and no ack waits to be written, stop reading.
    async fn wait_for_room(&self) {
        let s = &self.shared;
        while s.in_flight.load(Ordering::Acquire) >= self.spec.receive_maximum
            && s.acks_queued.load(Ordering::Acquire) == 0
            && !s.closing.load(Ordering::Acquire)
        {
            if tokio::time::timeout(self.keep_alive / 2, s.wake.notified())
                .await
                .is_err()
            {
                return; // poll once, so that keep-alive pings go out
            }
        }
    }

    fn on_publish(&self, publish: Publish) {
        if self.shared.closing.load(Ordering::Acquire) {
            return; // not acknowledged: the broker redelivers it to the group
        }
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        let ack = AckToken {
            qos: publish.qos,
            packet_id: publish.pkid,
            epoch: self.shared.epoch.load(Ordering::Acquire),
            _slot: Slot(self.shared.clone()),
        };
        let msg = Message::from_publish(&publish, &self.spec.publisher);
        // Fails only when the route is shutting down; the message then stays unacknowledged.
        let _ = self.tx.send(Delivery { msg, ack });
    }

    fn on_connack(&self, session_present: bool) {
        let epoch = self.shared.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        events::ConsumerConnected {
            route: &self.spec.route,
            client_id: &self.spec.client_id,
            session_present,
            epoch,
        }
        .emit();
        // Subscribing again on a resumed session is harmless and repairs a lost one.
        let filters = self.spec.filters.iter().map(|f| {
            Filter::new(
                format!("$share/{}/{}", self.spec.share_group, f),
                self.spec.qos,
            )
        });
        if let Err(e) = self.client.try_subscribe_many(filters.collect::<Vec<_>>()) {
            let error = format!("could not queue SUBSCRIBE: {e}");
            events::SubscribeFailed {
                route: &self.spec.route,
                client_id: &self.spec.client_id,
                error: &error,
            }
            .emit();
        }
    }

    fn on_suback(&self, codes: &[SubscribeReasonCode]) {
        for (code, filter) in codes.iter().zip(&self.spec.filters) {
            if !matches!(code, SubscribeReasonCode::Success(_)) {
                let error = format!(
                    "broker refused $share/{}/{filter}: {code:?}",
                    self.spec.share_group
                );
                events::SubscribeFailed {
                    route: &self.spec.route,
                    client_id: &self.spec.client_id,
                    error: &error,
                }
                .emit();
            } else {
                events::Subscribed {
                    route: &self.spec.route,
                    client_id: &self.spec.client_id,
                    filter,
                }
                .emit();
            }
        }
    }
}
