//! One MQTT consumer: a client in a route's shared-subscription group.
//!
//! Delivery guarantee: at least once for QoS 1 and 2. The poll task only moves PUBLISH packets
//! into a bounded channel; acknowledgements travel back through `Acker` after the sink has
//! confirmed the message. Each delivery carries the connection epoch it arrived on: after a
//! reconnect, acks for an older epoch are dropped (their packet ids may now name other
//! messages), and the broker redelivers those messages on the resumed session instead.
//! In-flight messages are capped by a semaphore of `receive_maximum` permits, taken before a
//! message enters the channel and given back once its ack is queued: when the sink stalls, the
//! poll task waits for a permit and stops reading from the socket, so the broker holds the
//! backlog, not the bridge.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use rumqttc::Outgoing;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

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
    _permit: OwnedSemaphorePermit,
}

/// State shared by a consumer's poll task and its acker.
struct Shared {
    epoch: AtomicU64,
    closing: AtomicBool,
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
        let AckToken { qos, packet_id, epoch, _permit } = token;
        if qos == QoS::AtMostOnce {
            return true;
        }
        if epoch != self.shared.epoch.load(Ordering::Acquire) {
            return false;
        }
        // Give the permit back first: the poll task may be waiting for one, and it is the poll
        // task that drains the request channel this ack goes into.
        drop(_permit);
        let mut publish = Publish::new("", qos, Bytes::new(), None);
        publish.pkid = packet_id;
        if let Err(e) = self.client.ack(&publish).await {
            events::AckFailed { route: &self.route, error: &e.to_string() }.emit();
            return false;
        }
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
) -> (mpsc::Receiver<Delivery>, Acker, tokio::task::JoinHandle<()>) {
    let options = endpoint.consumer_options(&spec.client_id);
    // Room for every ack the in-flight window can produce, plus control packets.
    let (client, eventloop) = AsyncClient::new(options, spec.receive_maximum + 64);
    let (tx, rx) = mpsc::channel(spec.receive_maximum);
    let shared = Arc::new(Shared { epoch: AtomicU64::new(0), closing: AtomicBool::new(false) });
    let acker = Acker { client: client.clone(), shared: shared.clone(), route: spec.route.clone() };
    let poller = Poller {
        permits: Arc::new(Semaphore::new(spec.receive_maximum)),
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
    tx: mpsc::Sender<Delivery>,
    permits: Arc<Semaphore>,
    address: String,
}

impl Poller {
    async fn run(self, mut eventloop: EventLoop) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(publish))) => self.on_publish(publish).await,
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    backoff = Duration::from_millis(100);
                    self.on_connack(ack.session_present);
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => self.on_suback(&ack.return_codes),
                Ok(Event::Incoming(Packet::Disconnect(d))) => {
                    let reason = format!("broker disconnected: {:?}", d.reason_code);
                    events::ConsumerDisconnected { route: &self.spec.route, client_id: &self.spec.client_id, error: &reason }.emit();
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    self.shared.epoch.fetch_add(1, Ordering::AcqRel);
                    if self.shared.closing.load(Ordering::Acquire) {
                        break;
                    }
                    let error = format!("{e} (broker {})", self.address);
                    events::ConsumerDisconnected { route: &self.spec.route, client_id: &self.spec.client_id, error: &error }.emit();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn on_publish(&self, publish: Publish) {
        if self.shared.closing.load(Ordering::Acquire) {
            return; // not acknowledged: the broker redelivers it to the group
        }
        let Ok(permit) = self.permits.clone().acquire_owned().await else { return };
        let ack = AckToken {
            qos: publish.qos,
            packet_id: publish.pkid,
            epoch: self.shared.epoch.load(Ordering::Acquire),
            _permit: permit,
        };
        let msg = Message::from_publish(&publish, &self.spec.publisher);
        // Fails only when the route is shutting down; the message then stays unacknowledged.
        let _ = self.tx.send(Delivery { msg, ack }).await;
    }

    fn on_connack(&self, session_present: bool) {
        let epoch = self.shared.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        events::ConsumerConnected { route: &self.spec.route, client_id: &self.spec.client_id, session_present, epoch }.emit();
        // Subscribing again on a resumed session is harmless and repairs a lost one.
        let filters = self.spec.filters.iter().map(|f| {
            Filter::new(format!("$share/{}/{}", self.spec.share_group, f), self.spec.qos)
        });
        if let Err(e) = self.client.try_subscribe_many(filters.collect::<Vec<_>>()) {
            let error = format!("could not queue SUBSCRIBE: {e}");
            events::SubscribeFailed { route: &self.spec.route, client_id: &self.spec.client_id, error: &error }.emit();
        }
    }

    fn on_suback(&self, codes: &[SubscribeReasonCode]) {
        for (code, filter) in codes.iter().zip(&self.spec.filters) {
            if !matches!(code, SubscribeReasonCode::Success(_)) {
                let error = format!("broker refused $share/{}/{filter}: {code:?}", self.spec.share_group);
                events::SubscribeFailed { route: &self.spec.route, client_id: &self.spec.client_id, error: &error }.emit();
            } else {
                events::Subscribed { route: &self.spec.route, client_id: &self.spec.client_id, filter }.emit();
            }
        }
    }
}
