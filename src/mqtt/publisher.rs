//! A publishing MQTT client that tells the caller when the broker acknowledged each QoS 1
//! PUBLISH (rumqttc's `publish` only queues). Used for the dead-letter topic.
//!
//! rumqttc reports `Outgoing::Publish(pkid)` in the order requests were queued, so a waiter and
//! its request are queued together under one lock and matched to packet ids as they go out.
//! When the connection is lost, the poll task takes the same lock, fails every waiter and purges
//! rumqttc's queues, so nothing is replayed after the reconnect and no PUBACK can be matched to
//! the wrong waiter; the caller publishes again (at least once).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use rumqttc::Outgoing;
use tokio::sync::oneshot;

use super::options::Endpoint;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("MQTT connection lost before the broker acknowledged the message")]
    ConnectionLost,
    #[error("could not queue the PUBLISH: {0}")]
    Client(String),
    #[error("no acknowledgement from the broker within {0:?}")]
    Timeout(Duration),
}

type Waiter = oneshot::Sender<Result<(), PublishError>>;

#[derive(Default)]
struct Waiters {
    queued: VecDeque<Waiter>,
    sent: HashMap<u16, Waiter>,
}

#[derive(Clone)]
pub struct Publisher {
    client: AsyncClient,
    state: Arc<Mutex<Waiters>>,
    /// The user property every publish carries (`[mqtt] origin_property`), if any.
    marker: Option<(String, String)>,
}

impl Publisher {
    /// A publisher that marks each message with `marker` (name, value).
    pub fn start(
        endpoint: &Endpoint,
        client_id: &str,
        marker: Option<(String, String)>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (client, eventloop) = AsyncClient::new(endpoint.publisher_options(client_id), 64);
        let state = Arc::new(Mutex::new(Waiters::default()));
        let task = tokio::spawn(poll(eventloop, state.clone()));
        let publisher = Publisher {
            client,
            state,
            marker,
        };
        (publisher, task)
    }

    /// Publishes at QoS 1 and waits for the broker's PUBACK.
    pub async fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<(), PublishError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut state = lock(&self.state);
            let properties = PublishProperties {
                user_properties: self.marker.iter().cloned().collect(),
                ..Default::default()
            };
            if let Err(e) = self.client.try_publish_with_properties(
                topic,
                QoS::AtLeastOnce,
                false,
                payload,
                properties,
            ) {
                return Err(PublishError::Client(e.to_string()));
            }
            state.queued.push_back(tx);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(PublishError::ConnectionLost),
            Err(_) => Err(PublishError::Timeout(timeout)),
        }
    }

    pub async fn disconnect(&self) {
        let _ = self.client.disconnect().await;
    }
}

async fn poll(mut eventloop: EventLoop, state: Arc<Mutex<Waiters>>) {
    loop {
        let event = eventloop.poll().await;
        let step = {
            let mut waiters = lock(&state);
            let step = handle(event, &mut waiters);
            if matches!(step, Step::Pause) {
                eventloop.clean();
                eventloop.pending.clear();
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

fn handle(event: Result<Event, rumqttc::v5::ConnectionError>, s: &mut Waiters) -> Step {
    match event {
        Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
            if let Some(w) = s.queued.pop_front() {
                s.sent.insert(pkid, w);
            }
        }
        Ok(Event::Incoming(Packet::PubAck(ack))) => {
            if let Some(w) = s.sent.remove(&ack.pkid) {
                let _ = w.send(Ok(()));
            }
        }
        Ok(Event::Outgoing(Outgoing::Disconnect)) => return Step::Stop,
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "dead-letter MQTT publisher disconnected; retrying");
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
