//! A publishing MQTT client that tells the caller when the broker acknowledged each PUBLISH
//! (rumqttc's `publish` only queues). Used for the dead-letter topic and by downlinks.
//!
//! rumqttc reports `Outgoing::Publish(pkid)` in the order requests were queued, so a waiter and
//! its request are queued together under one lock and matched to packet ids as they go out
//! (a QoS 0 message is done once written: its packet id is 0).
//! When the connection is lost, the poll task takes the same lock, fails every waiter and purges
//! rumqttc's queues, so nothing is replayed after the reconnect and no PUBACK can be matched to
//! the wrong waiter; the caller publishes again (at least once).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use rumqttc::Outgoing;
use tokio::sync::oneshot;

use super::options::Endpoint;

#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    #[error("MQTT connection lost before the broker acknowledged the message")]
    ConnectionLost,
    #[error("could not queue the PUBLISH: {0}")]
    Client(String),
    #[error("no acknowledgement from the broker within {0:?}")]
    Timeout(Duration),
    #[error("the broker refused the message: PUBACK reason {0:?}")]
    Refused(PubAckReason),
}

/// A message to publish.
#[derive(Debug, Clone)]
pub struct Publication {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: PublishProperties,
}

impl Publication {
    /// Its size as a PUBLISH packet, with the publisher's marker property added.
    pub fn packet_size(&self, marker: Option<&(String, String)>) -> usize {
        let mut properties = self.properties.clone();
        properties.user_properties.extend(marker.cloned());
        let mut publish = Publish::new(
            self.topic.as_str(),
            self.qos,
            self.payload.clone(),
            Some(properties),
        );
        // The length counts a packet id only when there is one (QoS 1 and 2).
        if self.qos != QoS::AtMostOnce {
            publish.pkid = 1;
        }
        publish.size()
    }
}

type Waiter = oneshot::Sender<Result<(), PublishError>>;

#[derive(Default)]
struct Waiters {
    queued: VecDeque<Waiter>,
    sent: HashMap<u16, Waiter>,
    /// The largest packet the broker takes (its CONNACK's Maximum Packet Size): `None` until
    /// connected, `Some(None)` when it said no limit.
    max_packet: Option<Option<u32>>,
}

#[derive(Clone)]
pub struct Publisher {
    client: AsyncClient,
    state: Arc<Mutex<Waiters>>,
    /// The user property every publish carries (`[mqtt] origin_property`), if any.
    marker: Option<(String, String)>,
}

/// The broker's answer to one queued message.
pub struct Ack(oneshot::Receiver<Result<(), PublishError>>);

impl Ack {
    pub async fn wait(self, timeout: Duration) -> Result<(), PublishError> {
        tokio::time::timeout(timeout, self.answer())
            .await
            .unwrap_or(Err(PublishError::Timeout(timeout)))
    }

    /// The answer, however long it takes (the caller keeps the clock).
    pub async fn answer(self) -> Result<(), PublishError> {
        self.0.await.unwrap_or(Err(PublishError::ConnectionLost))
    }
}

impl Publisher {
    /// A publisher that marks each message with `marker` (name, value).
    pub fn start(
        endpoint: &Endpoint,
        client_id: &str,
        marker: Option<(String, String)>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        Self::with_queue(endpoint, client_id, marker, 64)
    }

    /// The same, queueing up to `capacity` messages not yet written.
    pub fn with_queue(
        endpoint: &Endpoint,
        client_id: &str,
        marker: Option<(String, String)>,
        capacity: usize,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        // As many unacknowledged as can be queued, and never fewer than 1,024.
        let inflight = capacity.clamp(1024, u16::MAX as usize) as u16;
        let options = endpoint.publisher_options(client_id, inflight);
        let (client, eventloop) = AsyncClient::new(options, capacity);
        let state = Arc::new(Mutex::new(Waiters::default()));
        let task = tokio::spawn(poll(eventloop, state.clone(), client_id.to_owned()));
        let publisher = Publisher {
            client,
            state,
            marker,
        };
        (publisher, task)
    }

    /// The marker property every message carries.
    pub fn marker(&self) -> Option<&(String, String)> {
        self.marker.as_ref()
    }

    /// The largest packet the broker said it takes: `None` until the first connection,
    /// `Some(None)` when it set no limit.
    pub fn max_packet_size(&self) -> Option<Option<u32>> {
        lock(&self.state).max_packet
    }

    /// Queues `message` (marked) at once; the answer comes when the broker acknowledged it
    /// (QoS 1) or it was written (QoS 0).
    pub fn queue(&self, message: Publication) -> Result<Ack, PublishError> {
        let (tx, rx) = oneshot::channel();
        let mut properties = message.properties;
        properties
            .user_properties
            .extend(self.marker.iter().cloned());
        let mut state = lock(&self.state);
        self.client
            .try_publish_with_properties(
                message.topic,
                message.qos,
                message.retain,
                message.payload,
                properties,
            )
            .map_err(|e| PublishError::Client(e.to_string()))?;
        state.queued.push_back(tx);
        Ok(Ack(rx))
    }

    /// Publishes at QoS 1 and waits for the broker's PUBACK.
    pub async fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<(), PublishError> {
        let ack = self.queue(Publication {
            topic: topic.to_owned(),
            payload,
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: PublishProperties::default(),
        })?;
        ack.wait(timeout).await
    }

    pub async fn disconnect(&self) {
        let _ = self.client.disconnect().await;
    }

    /// Disconnects and ends the poll task (`task`, from `start`): a DISCONNECT queued while the
    /// broker is away is purged with the rest, so the task is stopped after a grace period
    /// rather than left to connect again later under the same client id.
    pub async fn shut(&self, mut task: tokio::task::JoinHandle<()>) {
        let _ = self.client.try_disconnect();
        if tokio::time::timeout(Duration::from_secs(2), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

async fn poll(mut eventloop: EventLoop, state: Arc<Mutex<Waiters>>, client_id: String) {
    loop {
        let event = eventloop.poll().await;
        let step = {
            let mut waiters = lock(&state);
            let step = handle(event, &mut waiters, &client_id);
            if matches!(step, Step::Pause) {
                eventloop.clean();
                eventloop.pending.clear();
                // Events of the lost connection still buffered (a failed write leaves the
                // `Outgoing::Publish` of every request it took) would pair the next waiters
                // with the wrong packet ids; a collision left set would block every publish.
                eventloop.state.events.clear();
                eventloop.state.collision = None;
            }
            step
        };
        match step {
            Step::Continue => {}
            Step::Stop => break,
            Step::Pause => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

fn lock(state: &Mutex<Waiters>) -> std::sync::MutexGuard<'_, Waiters> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

enum Step {
    Continue,
    Pause,
    Stop,
}

fn handle(
    event: Result<Event, rumqttc::v5::ConnectionError>,
    s: &mut Waiters,
    client_id: &str,
) -> Step {
    match event {
        Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
            if let Some(w) = s.queued.pop_front() {
                if pkid == 0 {
                    let _ = w.send(Ok(()));
                } else {
                    s.sent.insert(pkid, w);
                }
            }
        }
        Ok(Event::Incoming(Packet::PubAck(ack))) => {
            if let Some(w) = s.sent.remove(&ack.pkid) {
                let outcome = match ack.reason {
                    PubAckReason::Success | PubAckReason::NoMatchingSubscribers => Ok(()),
                    reason => Err(PublishError::Refused(reason)),
                };
                let _ = w.send(outcome);
            }
        }
        Ok(Event::Incoming(Packet::ConnAck(ack))) => {
            s.max_packet = Some(ack.properties.and_then(|p| p.max_packet_size));
        }
        Ok(Event::Outgoing(Outgoing::Disconnect)) => return Step::Stop,
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(client_id, error = %e, "MQTT publisher disconnected; retrying");
            for (_, w) in s.sent.drain() {
                let _ = w.send(Err(PublishError::ConnectionLost));
            }
            for w in s.queued.drain(..) {
                let _ = w.send(Err(PublishError::ConnectionLost));
            }
            return Step::Pause;
        }
    }
    Step::Continue
}

#[cfg(test)]
mod tests {
    use rumqttc::v5::mqttbytes::v5::{ConnAck, ConnAckProperties, ConnectReturnCode, PubAck};
    use rumqttc::v5::{MqttState, Request};

    use super::*;

    fn connack(receive_max: u16) -> Packet {
        let properties = ConnAckProperties {
            session_expiry_interval: None,
            receive_max: Some(receive_max),
            max_qos: None,
            retain_available: None,
            max_packet_size: None,
            assigned_client_identifier: None,
            topic_alias_max: None,
            reason_string: None,
            user_properties: Vec::new(),
            wildcard_subscription_available: None,
            subscription_identifiers_available: None,
            shared_subscription_available: None,
            server_keep_alive: None,
            response_information: None,
            server_reference: None,
            authentication_method: None,
            authentication_data: None,
        };
        Packet::ConnAck(ConnAck {
            session_present: false,
            code: ConnectReturnCode::Success,
            properties: Some(properties),
        })
    }

    /// Publishes `n` messages one after another, each acknowledged; the packet ids used.
    fn publish_acked(state: &mut MqttState, n: usize) -> Vec<u16> {
        (0..n)
            .map(|_| {
                let publish = Publish::new("t", QoS::AtLeastOnce, Bytes::from_static(b"x"), None);
                let sent = state.handle_outgoing_packet(Request::Publish(publish));
                let Ok(Some(Packet::Publish(sent))) = sent else {
                    panic!("not sent: {sent:?}");
                };
                let ack = Packet::PubAck(PubAck::new(sent.pkid, None));
                state.handle_incoming_packet(ack).expect("acknowledged");
                sent.pkid
            })
            .collect()
    }

    #[test]
    fn packet_ids_wrap_at_a_receive_maximum_lowered_across_a_reconnect() {
        // The table a publisher keeps: 1,024 slots, whatever the broker allows.
        let mut state = MqttState::new(1024, false);
        state.handle_incoming_packet(connack(u16::MAX)).unwrap();
        let ids = publish_acked(&mut state, 1000);
        assert_eq!(ids.last(), Some(&1000));
        // The broker comes back allowing 10: the ids go on from where they were, then wrap
        // within the new limit instead of running off the table.
        state.clean();
        state.handle_incoming_packet(connack(10)).unwrap();
        let ids = publish_acked(&mut state, 3000);
        assert_eq!(ids[..3], [1001, 1, 2]);
        assert!(ids[1..].iter().all(|id| (1..=10).contains(id)), "{ids:?}");
    }
}
