//! One MQTT consumer: a client in a route's shared-subscription group.
//!
//! Delivery guarantee: at least once for QoS 1. The poll task only moves PUBLISH packets into
//! the route's channel; acknowledgements travel back through the `Acker` after the sink has
//! confirmed the message (see `acker.rs` for how an ack is tied to its connection).
//!
//! Bounded memory: the bridge announces `receive_maximum` in CONNECT, but does not rely on the
//! broker honouring it (mosquitto before 2.0.13 sends past it). It counts the messages and the
//! payload bytes it holds and, while either window is full, tells rumqttc's event loop to stop
//! reading (the `ReadGate` of the bridge's patch to rumqttc, `vendor/rumqttc/PATCH.md`): the
//! backlog stays with the broker, behind TCP's flow control, while the event loop goes on
//! writing acks and keep-alive pings. So a consumer holds at most `receive_maximum` messages
//! or `max_inflight_bytes` of payload (or one larger message) before it stops, plus what one
//! socket read brings in (up to nine packets); nothing is refused or dropped.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, ReadGate};
use rumqttc::Outgoing;
use tokio::sync::mpsc;

use super::acker::{AckToken, Acker, Shared};
use super::config::PublisherProperties;
use super::convert;
use crate::connectors::mqtt::Endpoint;
use crate::events;
use crate::flow::ConsumerStatus;
use crate::flow::Delivery;
use crate::flow::Pause;

pub struct ConsumerSpec {
    pub route: Arc<str>,
    /// The consumer's acknowledgement lane in the route's pipeline (0-based).
    pub lane: usize,
    pub client_id: String,
    pub filters: Vec<String>,
    pub share_group: String,
    pub qos: QoS,
    pub receive_maximum: usize,
    /// Payload bytes held at most (beyond one message).
    pub max_inflight_bytes: usize,
    pub publisher: PublisherProperties,
    /// The route's pause switch.
    pub pause: Arc<Pause>,
    /// What the operator sees of this consumer.
    pub status: Arc<ConsumerStatus>,
    /// An ordered route: each message gets its topic's order key (`Message::order_key`).
    pub order: bool,
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
    let (client, mut eventloop) = AsyncClient::new(options, 2 * spec.receive_maximum + 64);
    let shared = Arc::new(Shared::new(events::ConsumerWindow::new(
        &spec.route,
        spec.lane,
    )));
    let window = (
        shared.clone(),
        spec.receive_maximum,
        spec.max_inflight_bytes,
    );
    let pause = spec.pause.clone();
    let may_read = move || !pause.is_paused() && !window.0.window_full(window.1, window.2);
    spec.pause.register(shared.wake.clone());
    eventloop.set_read_gate(ReadGate::new(may_read, shared.wake.clone()));
    let acker = Acker {
        client: client.clone(),
        shared: shared.clone(),
        route: spec.route.clone(),
    };
    let poller = Poller {
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
    address: String,
}

impl Poller {
    async fn run(self, mut eventloop: EventLoop) {
        let mut backoff = Duration::from_millis(100);
        let mut broker_reason = String::new();
        let mut connected = false;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(publish))) => self.on_publish(publish),
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    backoff = Duration::from_millis(100);
                    connected = true;
                    self.on_connack(ack.session_present);
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => self.on_suback(&ack.return_codes),
                Ok(Event::Incoming(Packet::Disconnect(d))) => {
                    // Reported with the connection error that follows.
                    broker_reason = format!(" after the broker's DISCONNECT ({:?})", d.reason_code);
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    self.stopped();
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    self.connection_lost(&mut eventloop);
                    if self.shared.closing.load(Ordering::Acquire) {
                        self.stopped();
                        break;
                    }
                    let reason = std::mem::take(&mut broker_reason);
                    let error = format!("{e}{reason} (broker {})", self.address);
                    let (route, status) = (&*self.spec.route, &*self.spec.status);
                    if std::mem::take(&mut connected) {
                        events::ConsumerDisconnected {
                            route,
                            status,
                            error: &error,
                        }
                        .emit();
                    } else {
                        events::ConnectFailed {
                            route,
                            status,
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

    fn stopped(&self) {
        events::ConsumerStopped {
            route: &self.spec.route,
            status: &self.spec.status,
        }
        .emit();
    }

    /// A new epoch begins: acks of the old one are refused from now on, any that slipped into
    /// rumqttc's queue since it cleaned up are purged (`clean` drops queued PUBACKs), and so are
    /// events rumqttc read on the old connection but has not handed out yet (`clean` keeps
    /// them: a PUBLISH among them would otherwise be taken as the new connection's).
    fn connection_lost(&self, eventloop: &mut EventLoop) {
        let mut epoch = self.shared.epoch();
        *epoch += 1;
        eventloop.clean();
        eventloop.state.events.clear();
    }

    fn on_publish(&self, publish: Publish) {
        if self.shared.closing.load(Ordering::Acquire) {
            return; // not acknowledged: the broker redelivers it to the group
        }
        let slot = self.shared.hold(publish.payload.len());
        let ack = AckToken {
            qos: publish.qos,
            packet_id: publish.pkid,
            epoch: *self.shared.epoch(),
            _slot: slot,
        };
        let msg = convert::message(&publish, &self.spec.publisher);
        let lane = self.spec.lane;
        let key = match self.spec.order {
            true => msg.order_key(),
            false => 0,
        };
        // Fails only when the route is stopping; the message then stays unacknowledged.
        let _ = self.tx.send(Delivery {
            lane,
            key,
            msg,
            token: ack,
        });
    }

    fn on_connack(&self, session_present: bool) {
        if self.shared.closing.load(Ordering::Acquire) {
            return; // a DISCONNECT is on its way: nothing may follow it
        }
        let epoch = *self.shared.epoch();
        let (route, status) = (&*self.spec.route, &*self.spec.status);
        events::ConsumerConnected {
            route,
            status,
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
                route,
                status,
                error: &error,
            }
            .emit();
        }
    }

    /// The broker's answer to the SUBSCRIBE: every filter granted, or the refusals.
    fn on_suback(&self, codes: &[SubscribeReasonCode]) {
        let (route, status) = (&*self.spec.route, &*self.spec.status);
        let mut granted = Vec::new();
        let mut refused = Vec::new();
        for (code, filter) in codes.iter().zip(&self.spec.filters) {
            match code {
                SubscribeReasonCode::Success(_) => granted.push(filter.as_str()),
                code => refused.push(format!(
                    "broker refused $share/{}/{filter}: {code:?}",
                    self.spec.share_group
                )),
            }
        }
        events::Subscribed {
            route,
            status,
            granted: &granted,
            complete: refused.is_empty() && granted.len() == self.spec.filters.len(),
        }
        .emit();
        for error in &refused {
            events::SubscribeFailed {
                route,
                status,
                error,
            }
            .emit();
        }
    }
}
