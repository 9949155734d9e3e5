//! MQTT as a sink: a batch's messages published through the route's own MQTT connections
//! (`mqtt::Publisher`), pipelined: every PUBLISH of the batch is queued at once, then the
//! broker's PUBACKs are awaited. The messages of one order key (a partition's or a queue's; an
//! MQTT topic's) always take the same connection, so they reach the broker in order; when one
//! of them fails and will be sent again, the ones after it of the same key are sent again too
//! (reported as held behind it), so that the order holds on the retry as well.
//!
//! Outcomes: a topic the template cannot make, a property MQTT cannot carry or a packet larger
//! than the broker takes are permanent (dead letters); a PUBACK refusing the topic or payload
//! format is permanent, one for want of rights is the configuration's (held until the ACL is
//! mended), other refusals count as failed attempts; a lost connection or a missing PUBACK is
//! retried for as long as it takes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{FuturesUnordered, StreamExt};
use rumqttc::v5::mqttbytes::v5::PubAckReason;
use tokio::task::JoinHandle;

use super::publication::{publication, PublishSettings};
use super::template::check_publish_topic;
use crate::connectors::mqtt::{Ack, Endpoint, PublishError, Publisher};
use crate::flow::{Retry, Sink, SinkError};
use crate::message::{Message, Partition};

/// How long a batch's PUBLISHes may wait for their PUBACKs (plus 10 ms a message).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a send waits for the first connection before it counts as failed.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

pub struct MqttSink {
    settings: PublishSettings,
    /// A partition's messages always take the same one.
    publishers: Vec<Publisher>,
    /// Their poll tasks, ended by `close`.
    polls: Mutex<Vec<JoinHandle<()>>>,
    /// Per connection: a publish could not be queued; later ones of the send are not queued.
    blocked: Vec<AtomicBool>,
    /// Taken while a send queues its messages: sends queue in the order they were first
    /// polled (the lock is fair), which is the order the pipeline hands a key's batches over.
    turn: tokio::sync::Mutex<()>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unpublishable(String);

#[derive(Debug, thiserror::Error)]
#[error("sent again after an earlier message of its partition failed")]
struct HeldBehind;

impl MqttSink {
    /// Connects `connections` publishers named `{client_id}-{n}`, each queueing up to
    /// `queue` messages, marking each message with `marker`.
    pub fn start(
        endpoint: &Endpoint,
        client_id: &str,
        connections: usize,
        queue: usize,
        marker: Option<(String, String)>,
        settings: PublishSettings,
    ) -> Self {
        let (mut publishers, mut polls) = (Vec::new(), Vec::new());
        for n in 1..=connections.max(1) {
            let id = format!("{client_id}-{n}");
            let (publisher, poll) = Publisher::with_queue(endpoint, &id, marker.clone(), queue);
            publishers.push(publisher);
            polls.push(poll);
        }
        MqttSink {
            settings,
            blocked: publishers.iter().map(|_| AtomicBool::new(false)).collect(),
            publishers,
            polls: Mutex::new(polls),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// The broker's packet limit per connection, once each has connected (within
    /// `CONNECT_WAIT`).
    async fn limits(&self) -> Option<Vec<Option<u32>>> {
        let deadline = tokio::time::Instant::now() + CONNECT_WAIT;
        loop {
            let limits: Option<Vec<Option<u32>>> = self
                .publishers
                .iter()
                .map(|p| p.max_packet_size())
                .collect();
            if limits.is_some() || tokio::time::Instant::now() >= deadline {
                return limits;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The connection of `msg`'s order key.
    fn lane(&self, msg: &Message) -> usize {
        (msg.order_key() % self.publishers.len() as u64) as usize
    }

    /// Makes `msg`'s PUBLISH and queues it on its connection.
    fn queue(&self, msg: &Message, limits: &[Option<u32>]) -> Result<Ack, SinkError> {
        let permanent = |kind, e: String| SinkError::new(kind, Retry::Permanent, Unpublishable(e));
        let topic = match msg.to_topic() {
            Some(topic) => check_publish_topic(topic).map(|()| topic.to_owned()),
            None => self.settings.topic.render(msg),
        };
        let topic =
            topic.map_err(|e| permanent("invalid_topic", format!("no MQTT topic for it: {e}")))?;
        let p = publication(msg, topic, &self.settings)
            .map_err(|e| permanent("invalid_property", e))?;
        let lane = self.lane(msg);
        if let Some(max) = limits[lane] {
            let size = p.packet_size(self.publishers[lane].marker());
            if size > max as usize {
                return Err(permanent(
                    "too_large",
                    format!(
                        "a {size}-byte PUBLISH is larger than the broker's maximum packet size \
                         of {max} bytes"
                    ),
                ));
            }
        }
        // Nothing overtakes a publish that could not be queued.
        if self.blocked[lane].load(Ordering::Relaxed) {
            return Err(failed(PublishError::Client("queue full".into())));
        }
        self.publishers[lane].queue(p).map_err(|e| {
            self.blocked[lane].store(true, Ordering::Relaxed);
            failed(e)
        })
    }
}

/// The outcome class of a failed publish.
fn failed(e: PublishError) -> SinkError {
    match e {
        PublishError::Refused(reason) => {
            let retry = match reason {
                PubAckReason::TopicNameInvalid | PubAckReason::PayloadFormatInvalid => {
                    Retry::Permanent
                }
                PubAckReason::NotAuthorized => Retry::Configuration,
                _ => Retry::Attempts,
            };
            SinkError::new("refused", retry, e)
        }
        e => SinkError::new("publish", Retry::Retriable, e),
    }
}

#[async_trait]
impl Sink for MqttSink {
    async fn send(&self, batch: &[&Message]) -> Vec<Result<(), SinkError>> {
        let turn = self.turn.lock().await;
        let Some(limits) = self.limits().await else {
            let e = PublishError::Client("not connected to the MQTT broker yet".into());
            return batch.iter().map(|_| Err(failed(e.clone()))).collect();
        };
        for blocked in &self.blocked {
            blocked.store(false, Ordering::Relaxed);
        }
        let queued = batch.iter().map(|msg| self.queue(msg, &limits)).collect();
        drop(turn);
        // Generous: a lost connection fails every wait at once, and the keep-alive finds a
        // silent one; this only bounds a broker that keeps the connection but never answers.
        let timeout = PUBLISH_TIMEOUT + Duration::from_millis(10) * batch.len() as u32;
        let mut outcomes = answers(queued, timeout).await;
        hold_behind_failures(batch, &mut outcomes);
        outcomes
    }

    async fn close(&self) {
        let polls = std::mem::take(&mut *self.polls.lock().unwrap_or_else(|p| p.into_inner()));
        let shuts = self
            .publishers
            .iter()
            .zip(polls)
            .map(|(p, poll)| p.shut(poll));
        futures::future::join_all(shuts).await;
    }
}

/// The broker's answers to the queued messages, or a timeout for those still unanswered
/// after `timeout` (one clock for the whole send).
async fn answers(
    queued: Vec<Result<Ack, SinkError>>,
    timeout: Duration,
) -> Vec<Result<(), SinkError>> {
    let mut waiting = FuturesUnordered::new();
    let mut outcomes: Vec<Option<Result<(), SinkError>>> = Vec::with_capacity(queued.len());
    for (n, q) in queued.into_iter().enumerate() {
        match q {
            Ok(ack) => {
                waiting.push(async move { (n, ack.answer().await) });
                outcomes.push(None);
            }
            Err(e) => outcomes.push(Some(Err(e))),
        }
    }
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            answer = waiting.next() => match answer {
                Some((n, answer)) => outcomes[n] = Some(answer.map_err(failed)),
                None => break,
            },
            _ = &mut deadline => break,
        }
    }
    let unanswered = || Err(failed(PublishError::Timeout(timeout)));
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(unanswered))
        .collect()
}

/// What keeps a message's place in order: its partition or queue, or its MQTT topic.
fn order_key(msg: &Message) -> Result<&Partition, &str> {
    msg.origin.as_ref().map(|o| &o.partition).ok_or(&msg.topic)
}

/// After a message that will be sent again, the later ones of its order key are sent again
/// too, even if the broker took them: the retry keeps the key's order.
fn hold_behind_failures(batch: &[&Message], outcomes: &mut [Result<(), SinkError>]) {
    let mut failed = HashSet::new();
    for (msg, outcome) in batch.iter().zip(outcomes.iter_mut()) {
        let key = order_key(msg);
        match outcome {
            Err(e) if e.retry() != Retry::Permanent => {
                failed.insert(key);
            }
            Ok(()) if failed.contains(&key) => {
                *outcome = Err(SinkError::new("held", Retry::Retriable, HeldBehind));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::kafka::KAFKA;
    use crate::connectors::mqtt::publication::tests::record_of;

    fn on(partition: i32) -> Message {
        let mut m = record_of(&KAFKA, "t", Vec::new());
        m.origin.as_mut().unwrap().partition.id = partition;
        m
    }

    #[test]
    fn what_follows_a_failure_of_its_partition_is_sent_again() {
        let msgs = [on(0), on(0), on(1), on(0), on(1)];
        let batch: Vec<&Message> = msgs.iter().collect();
        let lost = || Err(failed(PublishError::ConnectionLost));
        let invalid = || {
            Err(failed(PublishError::Refused(
                PubAckReason::TopicNameInvalid,
            )))
        };
        let mut outcomes = vec![lost(), Ok(()), invalid(), Ok(()), Ok(())];
        hold_behind_failures(&batch, &mut outcomes);
        let kinds: Vec<&str> = outcomes
            .iter()
            .map(|o| o.as_ref().err().map_or("ok", |e| e.kind()))
            .collect();
        // Partition 0 failed first: its later messages go again; partition 1's refusal is
        // for good, so what follows it stands.
        assert_eq!(kinds, ["publish", "held", "refused", "held", "ok"]);
    }

    #[test]
    fn refusals_are_classed_by_reason() {
        let class = |r| failed(PublishError::Refused(r)).retry();
        assert_eq!(class(PubAckReason::PayloadFormatInvalid), Retry::Permanent);
        assert_eq!(class(PubAckReason::NotAuthorized), Retry::Configuration);
        assert_eq!(class(PubAckReason::QuotaExceeded), Retry::Attempts);
        assert_eq!(
            failed(PublishError::ConnectionLost).retry(),
            Retry::Retriable
        );
    }
}
