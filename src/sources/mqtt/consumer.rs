//! One MQTT consumer: a client in a route's shared-subscription group.
//!
//! Delivery guarantee: at least once for QoS 1. The poll task only moves PUBLISH packets into
//! the route's channel; acknowledgements travel back through the `Acker` after the sink has
//! confirmed the message (see `acker.rs` for how an ack is tied to its connection).
//!
//! Bounded memory: the bridge announces `receive_maximum` in CONNECT, but does not rely on the
//! broker honouring it (mosquitto 2.0 sends past it). It counts its own in-flight messages and,
//! when the window is full, the poll task stops reading so the backlog stays with the broker.
//! rumqttc writes our acks only while it is polled, so the poll task pauses only while no ack is
//! queued (counted under the ack lock: +1 when the `Acker` queues one, -1 when rumqttc reports
//! it written), and resumes just before each keep-alive ping is due until the ping is out, so
//! the connection stays up during a long stall. The window can be overshot by what one socket
//! read brings in; nothing is refused or dropped.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use rumqttc::Outgoing;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::acker::{AckToken, Acker, Shared, Slot};
use super::convert;
use crate::config::PublisherProperties;
use crate::events;
use crate::mqtt::Endpoint;
use crate::sources::Delivery;

/// How long before rumqttc's next keep-alive ping a pause ends.
const PING_MARGIN: Duration = Duration::from_millis(250);

pub struct ConsumerSpec {
    pub route: Arc<str>,
    /// The consumer's acknowledgement lane in the route's pipeline (0-based).
    pub lane: usize,
    pub client_id: String,
    pub filters: Vec<String>,
    pub share_group: String,
    pub qos: QoS,
    pub receive_maximum: usize,
    pub publisher: PublisherProperties,
}

/// Where a consumer hands what it receives: the route's pipeline. Unbounded on purpose: the
/// poll task must never wait on it; the in-flight window bounds what is in it.
pub type Deliveries = mpsc::UnboundedSender<Delivery<AckToken>>;

/// A running consumer's poll task. Dropped before the task ended (its route was aborted or
/// panicked), it stops the task, dropping the connection without a DISCONNECT: the broker
/// keeps the session and redelivers what was not acknowledged once the route is back. A poll
/// task left running would keep the consumer in the group, reading messages nobody takes.
pub struct PollTask {
    task: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
}

impl PollTask {
    /// Waits for the task to end (after the acker's `close`).
    pub async fn join(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for PollTask {
    fn drop(&mut self) {
        if !self.task.is_finished() {
            self.shared.closing.store(true, Ordering::Release);
            self.task.abort();
        }
    }
}

/// Starts a consumer that hands its messages to `tx`: returns its acker and the poll task.
pub fn start(endpoint: &Endpoint, spec: ConsumerSpec, tx: Deliveries) -> (Acker, PollTask) {
    let options = endpoint.consumer_options(&spec.client_id);
    // Room for every ack the in-flight window can produce, plus control packets.
    let (client, eventloop) = AsyncClient::new(options, 2 * spec.receive_maximum + 64);
    let shared = Arc::new(Shared::new());
    let acker = Acker {
        client: client.clone(),
        shared: shared.clone(),
        route: spec.route.clone(),
    };
    let poller = Poller {
        keep_alive: endpoint.keep_alive(),
        spec,
        client,
        shared: shared.clone(),
        tx,
        address: endpoint.address(),
    };
    let task = tokio::spawn(poller.run(eventloop));
    (acker, PollTask { task, shared })
}

struct Poller {
    spec: ConsumerSpec,
    client: AsyncClient,
    shared: Arc<Shared>,
    tx: Deliveries,
    keep_alive: Duration,
    address: String,
}

impl Poller {
    async fn run(self, mut eventloop: EventLoop) {
        let mut backoff = Duration::from_millis(100);
        // rumqttc pings `keep_alive` after its last ping; a pause ends just before that, and
        // reading resumes until the ping is out.
        let mut ping_due = false;
        let mut last_ping = Instant::now();
        let mut broker_reason = String::new();
        let mut connected = false;
        loop {
            if !ping_due {
                let until = last_ping + self.keep_alive.saturating_sub(PING_MARGIN);
                ping_due = !self.wait_for_room(until).await;
            }
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(publish))) => self.on_publish(publish),
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    backoff = Duration::from_millis(100);
                    connected = true;
                    (last_ping, ping_due) = (Instant::now(), false);
                    self.on_connack(ack.session_present);
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => self.on_suback(&ack.return_codes),
                Ok(Event::Incoming(Packet::Disconnect(d))) => {
                    // Reported with the connection error that follows.
                    broker_reason = format!(" after the broker's DISCONNECT ({:?})", d.reason_code);
                }
                // A PUBREC goes out only if a broker sent QoS 2 on these QoS 1 subscriptions,
                // against the spec; it is an ack all the same.
                Ok(Event::Outgoing(Outgoing::PubAck(_) | Outgoing::PubRec(_))) => {
                    let mut acks = self.shared.acks();
                    acks.queued = acks.queued.saturating_sub(1);
                }
                Ok(Event::Outgoing(Outgoing::PingReq)) => {
                    (last_ping, ping_due) = (Instant::now(), false)
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    self.connection_lost(&mut eventloop);
                    if self.shared.closing.load(Ordering::Acquire) {
                        break;
                    }
                    let reason = std::mem::take(&mut broker_reason);
                    let error = format!("{e}{reason} (broker {})", self.address);
                    let (route, client_id) = (&*self.spec.route, self.spec.client_id.as_str());
                    if std::mem::take(&mut connected) {
                        events::ConsumerDisconnected {
                            route,
                            client_id,
                            error: &error,
                        }
                        .emit();
                    } else {
                        events::ConnectFailed {
                            route,
                            client_id,
                            error: &error,
                        }
                        .emit();
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// A new epoch begins: acks of the old one are refused from now on, any that slipped into
    /// rumqttc's queue since it cleaned up are purged (`clean` drops queued PUBACKs), and so are
    /// events rumqttc read on the old connection but has not handed out yet (`clean` keeps
    /// them: a PUBLISH among them would otherwise be taken as the new connection's).
    fn connection_lost(&self, eventloop: &mut EventLoop) {
        let mut acks = self.shared.acks();
        acks.epoch += 1;
        eventloop.clean();
        eventloop.state.events.clear();
        acks.queued = 0;
    }

    /// Backpressure: while the window is full and no ack waits to be written, stop reading.
    /// Returns false when `until` passed, so that the caller lets a keep-alive ping out.
    async fn wait_for_room(&self, until: Instant) -> bool {
        let s = &self.shared;
        while s.in_flight.load(Ordering::Acquire) >= self.spec.receive_maximum
            && s.acks().queued == 0
            && !s.closing.load(Ordering::Acquire)
        {
            if tokio::time::timeout_at(until, s.wake.notified())
                .await
                .is_err()
            {
                return false;
            }
        }
        true
    }

    fn on_publish(&self, publish: Publish) {
        if self.shared.closing.load(Ordering::Acquire) {
            return; // not acknowledged: the broker redelivers it to the group
        }
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        let ack = AckToken {
            qos: publish.qos,
            packet_id: publish.pkid,
            epoch: self.shared.acks().epoch,
            _slot: Slot(self.shared.clone()),
        };
        let msg = convert::message(&publish, &self.spec.publisher);
        let lane = self.spec.lane;
        // Fails only when the route is stopping; the message then stays unacknowledged.
        let _ = self.tx.send(Delivery {
            lane,
            msg,
            token: ack,
        });
    }

    fn on_connack(&self, session_present: bool) {
        let epoch = self.shared.acks().epoch;
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
