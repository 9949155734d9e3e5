//! Kafka as a source: an rdkafka consumer in the route's group, subscribed to its topic, with
//! automatic commits off: offsets are committed once the pipeline has delivered (or
//! dead-lettered) everything before them. Pausing pauses every assigned partition (and any assigned later), so the
//! consumer keeps its group membership while it reads nothing.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::FutureExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message as _};
use rdkafka::{Offset, TopicPartitionList};

use super::connection::PRODUCER_ONLY;
use super::headers::KAFKA;
use super::{ConfigRefused, KafkaConnectionConfig, KafkaSourceConfig, LastError};
use crate::flow::BoxError;
use crate::message::{Message, Origin, Partition};
use crate::sources::lag::Ends;
use crate::sources::{Reader, StartFrom};

pub struct KafkaSource {
    /// Its context keeps what the client last reported, cleared by a message or an answered
    /// probe (`errors`).
    consumer: Arc<StreamConsumer<LastError>>,
    /// When the cluster was last asked whether the reported problem is over.
    probed: Option<Instant>,
    topic: String,
    name: String,
    paused: bool,
    /// Messages of partitions assigned while paused, handed out after resume.
    held: VecDeque<Message>,
    committed: BTreeMap<Partition, i64>,
    /// The group session (`session.timeout.ms`): how long a member may have no partitions
    /// before it counts as not reading.
    session: Duration,
}

/// How often a reader with a reported problem asks the cluster whether it is over, and how
/// long it waits for the answer.
const PROBE_EVERY: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl KafkaSource {
    pub fn start(
        c: &KafkaConnectionConfig,
        d: &KafkaSourceConfig,
        name: &str,
    ) -> Result<Self, BoxError> {
        let mut cfg = ClientConfig::new();
        cfg.set("client.id", format!("mqbridge-{name}"));
        cfg.set("log.connection.close", "false");
        // What a paused or slow route may hold fetched but not handed out. librdkafka counts
        // only payload bytes against the first, and keeps up to the second per partition
        // (100,000 by default, each message with a few hundred bytes of its own): a backlog of
        // small messages grew the bridge's memory by tens of MiB.
        cfg.set("queued.max.messages.kbytes", "4096");
        cfg.set("queued.min.messages", "2000");
        // A batch held while the MQTT broker is away must not cost the group membership (the
        // default is 5 minutes): librdkafka's maximum, a day.
        cfg.set("max.poll.interval.ms", "86400000");
        // Short fetch waits and back-offs: going through a full topic, the consumer's queue
        // empties faster than librdkafka's defaults (500 ms, 1 s) refill it. Measured: 19k →
        // 48k msg/s of 1 KiB from tansu (BENCHMARKS.md).
        cfg.set("fetch.wait.max.ms", "10");
        cfg.set("fetch.queue.backoff.ms", "10");
        for (key, value) in &c.librdkafka {
            if !PRODUCER_ONLY.contains(&key.as_str()) {
                cfg.set(key, value.expose());
            }
        }
        cfg.set("bootstrap.servers", &c.bootstrap_servers);
        cfg.set("group.id", d.group());
        cfg.set("enable.auto.commit", "false");
        cfg.set("enable.partition.eof", "false");
        cfg.set(
            "auto.offset.reset",
            match d.start {
                StartFrom::Latest => "latest",
                StartFrom::Earliest => "earliest",
            },
        );
        let consumer: StreamConsumer<LastError> = cfg
            .create_with_context(LastError::default())
            .map_err(ConfigRefused::from)?;
        consumer.subscribe(&[&d.topic])?;
        Ok(KafkaSource {
            consumer: Arc::new(consumer),
            probed: None,
            topic: d.topic.clone(),
            name: name.to_owned(),
            paused: false,
            held: VecDeque::new(),
            committed: BTreeMap::new(),
            session: session(c),
        })
    }

    /// What the client last reported.
    fn errors(&self) -> &LastError {
        self.consumer.context()
    }

    /// The partitions assigned now.
    fn assigned(&self) -> std::collections::HashSet<(String, i32)> {
        self.consumer
            .assignment()
            .map(|list| {
                list.elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn pause_assignment(&self) {
        if let Ok(assignment) = self.consumer.assignment() {
            if assignment.count() > 0 {
                let _ = self.consumer.pause(&assignment);
            }
        }
    }

    /// The next message within `wait` (none: only one already fetched), if any.
    async fn next(&self, wait: Duration) -> Option<Message> {
        let received = match wait.is_zero() {
            true => self.consumer.recv().now_or_never()?,
            false => tokio::time::timeout(wait, self.consumer.recv())
                .await
                .ok()?,
        };
        match received {
            Ok(m) => Some(owned(&m)),
            Err(e) => {
                // Broker outages and the like: librdkafka reconnects by itself.
                tracing::debug!(route = %self.name, error = %e, "Kafka consumer");
                None
            }
        }
    }
}

fn owned(m: &BorrowedMessage<'_>) -> Message {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_owned(), h.value.map(text).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let origin = Origin {
        system: &KAFKA,
        partition: Partition {
            topic: m.topic().to_owned(),
            broker: String::new(),
            id: m.partition(),
        },
        offset: m.offset(),
        key: m.key().map(text),
        tag: None,
    };
    let payload = bytes::Bytes::copy_from_slice(m.payload().unwrap_or_default());
    Message::record(origin, headers, payload)
}

#[async_trait]
impl Reader for KafkaSource {
    async fn poll(&mut self, max: usize, wait: Duration) -> Vec<Message> {
        let mut out: Vec<Message> = Vec::new();
        while out.len() < max {
            match self.held.pop_front() {
                Some(m) => out.push(m),
                None => break,
            }
        }
        if out.is_empty() {
            match self.next(wait).await {
                Some(m) => out.push(m),
                None => return out,
            }
        }
        while out.len() < max {
            match self.next(Duration::ZERO).await {
                Some(m) => out.push(m),
                None => break,
            }
        }
        // The cluster answered.
        self.errors().clear();
        out
    }

    async fn commit(&mut self, next: &BTreeMap<Partition, i64>) {
        // A partition taken away by a rebalance meanwhile has a new owner, whose progress a
        // commit from here would set back: only the partitions still assigned are committed.
        let assigned = self.assigned();
        self.committed
            .retain(|p, _| assigned.contains(&(p.topic.clone(), p.id)));
        let mut list = TopicPartitionList::new();
        for (p, offset) in next {
            if !assigned.contains(&(p.topic.clone(), p.id)) {
                continue;
            }
            self.committed.insert(p.clone(), *offset);
            let _ = list.add_partition_offset(&p.topic, p.id, Offset::Offset(*offset));
        }
        if list.count() == 0 {
            return;
        }
        if let Err(e) = self.consumer.commit(&list, CommitMode::Async) {
            tracing::warn!(route = %self.name, error = %e, "Kafka offset commit failed; a later commit covers it");
        }
    }

    async fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
        match paused {
            true => self.pause_assignment(),
            false => {
                if let Ok(assignment) = self.consumer.assignment() {
                    let _ = self.consumer.resume(&assignment);
                }
            }
        }
    }

    async fn idle(&mut self, wait: Duration) {
        // Serving the consumer keeps it in the group; a partition assigned meanwhile is
        // paused too, and what it already delivered is kept for after the pause.
        if let Some(m) = self.next(wait).await {
            self.held.push_back(m);
            self.pause_assignment();
        }
    }

    async fn trouble(&mut self) -> Option<String> {
        let reason = self.errors().current()?;
        if self.probed.is_some_and(|at| at.elapsed() < PROBE_EVERY) {
            return Some(reason);
        }
        // A problem reported once stays until the cluster answers: a quiet topic brings no
        // message to say so, so the topic's metadata is asked for.
        self.probed = Some(Instant::now());
        let (consumer, topic) = (self.consumer.clone(), self.topic.clone());
        let answered = tokio::task::spawn_blocking(move || {
            consumer.fetch_metadata(Some(&topic), PROBE_TIMEOUT).is_ok()
        });
        match answered.await {
            Ok(true) => {
                self.errors().clear();
                None
            }
            _ => self.errors().current(),
        }
    }

    fn ask_ends(&mut self, partitions: &[Partition]) -> Option<Ends> {
        let assigned = self.assigned();
        let asked: Vec<Partition> = partitions
            .iter()
            .filter(|p| assigned.contains(&(p.topic.clone(), p.id)))
            .cloned()
            .collect();
        let consumer = self.consumer.clone();
        Some(tokio::task::spawn_blocking(move || {
            let end = |p: Partition| {
                let (_, high) = consumer
                    .fetch_watermarks(&p.topic, p.id, PROBE_TIMEOUT)
                    .ok()?;
                Some((p, high))
            };
            asked.into_iter().filter_map(end).collect()
        }))
    }

    fn has_partitions(&self) -> Option<bool> {
        Some(!self.assigned().is_empty())
    }

    fn session(&self) -> Duration {
        self.session
    }

    async fn close(self: Box<Self>) {
        let assigned = self.assigned();
        let KafkaSource {
            consumer,
            committed,
            name,
            ..
        } = *self;
        // Closing commits synchronously and leaves the group: blocking work, off the runtime.
        let _ = tokio::task::spawn_blocking(move || {
            let mut list = TopicPartitionList::new();
            for (p, offset) in &committed {
                if assigned.contains(&(p.topic.clone(), p.id)) {
                    let _ = list.add_partition_offset(&p.topic, p.id, Offset::Offset(*offset));
                }
            }
            if list.count() > 0 {
                if let Err(e) = consumer.commit(&list, CommitMode::Sync) {
                    tracing::warn!(route = %name, error = %e, "final Kafka offset commit failed");
                }
            }
            consumer.unsubscribe();
            drop(consumer);
        })
        .await;
    }
}

/// The group session the connection's settings give a member: librdkafka's
/// `session.timeout.ms`, 45 s unless set.
fn session(c: &KafkaConnectionConfig) -> Duration {
    let set = c.librdkafka.get("session.timeout.ms");
    let ms = set.and_then(|v| v.expose().parse().ok()).unwrap_or(45_000);
    Duration::from_millis(ms)
}
