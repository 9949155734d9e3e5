//! A running downlink: one task that polls its source, publishes each batch to the MQTT broker
//! in source order (pipelined, one PUBLISH per message; the next batch is queued while the one
//! before waits for its last acknowledgements), sends unpublishable messages to the dead-letter
//! destination, and only then commits the batch's offsets, batch after batch. A failed publish
//! (the broker down, a timeout) is retried for as long as it takes, together with everything
//! after it, in order; nothing after it is committed before it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::PubAckReason;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::{DownlinkConfig, SourceKind};
use super::kafka::KafkaSource;
use super::message::{Partition, SourceMessage};
use super::rocketmq::RocketmqSource;
use super::source::{next_offsets, Source};
use crate::config::{ConnectionConfig, MqttConfig};
use crate::dead_letter::{DeadLetter, DeadLetterEntry};
use crate::events;
use crate::message::now_ms;
use crate::mqtt::{Ack, Endpoint, Publication, PublishError, Publisher};
use crate::pipeline::Pause;
use crate::sinks::kafka::KafkaConnectionConfig;
use crate::sinks::rocketmq::RocketmqConnectionConfig;
use crate::sinks::{BoxError, Retry, SinkError};

/// How long a batch's PUBLISHes may wait for their PUBACKs (plus 10 ms a message) before they
/// are sent again.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(60);
/// Refusals (other than for rights) after which a message is dead-lettered.
const REFUSALS: u32 = 5;
/// Batches on their way at once.
const WINDOW: usize = 2;
/// The first wait after a failed publish; it doubles up to 5 s.
const BACKOFF: Duration = Duration::from_millis(250);
/// How long a poll waits for the first message.
const POLL_WAIT: Duration = Duration::from_millis(500);

/// What every downlink shares.
#[derive(Clone)]
pub struct DownlinkShared {
    pub endpoint: Endpoint,
    pub mqtt: MqttConfig,
    pub dead_letter: Arc<DeadLetter>,
}

/// A downlink's counts and condition, as `/routes` shows them.
#[derive(Default)]
pub struct DownlinkStats {
    pub received: AtomicU64,
    pub published: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub retried: AtomicU64,
    /// Set once the source is up.
    pub started: std::sync::atomic::AtomicBool,
    /// Since when publishing has failed without a success (ms since the epoch; 0: not failing).
    pub failing_since: AtomicU64,
    pub last_publish: AtomicU64,
    last_error: Mutex<Option<(String, u64)>>,
}

impl DownlinkStats {
    fn error(&self, message: String) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some((message, now_ms()));
    }

    /// Publishing (or dead-lettering) failed with `message`: failing from now, unless already.
    fn failing(&self, message: String) {
        let _ =
            self.failing_since
                .compare_exchange(0, now_ms(), Ordering::Relaxed, Ordering::Relaxed);
        self.error(message);
    }

    /// The last error and when it came (ms since the epoch).
    pub fn last_error(&self) -> Option<(String, u64)> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

pub struct DownlinkHandle {
    pub config: DownlinkConfig,
    /// When this start of the downlink began.
    pub started_at: std::time::Instant,
    pub stats: Arc<DownlinkStats>,
    pause: Arc<Pause>,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl DownlinkHandle {
    /// Starts `config` reading from `connection`; paused from the start when `paused`.
    pub fn start(
        config: &DownlinkConfig,
        connection: &ConnectionConfig,
        shared: &DownlinkShared,
        paused: bool,
    ) -> Result<Self, BoxError> {
        let kind = SourceKind::of(connection).ok_or_else(|| {
            format!(
                "downlink \"{}\": connection \"{}\" is neither kafka nor rocketmq",
                config.name, config.connection
            )
        })?;
        let (mut publishers, mut polls) = (Vec::new(), Vec::new());
        for n in 1..=config.mqtt_connections.max(1) {
            let client_id = format!(
                "{}-downlink-{}-{n}",
                shared.mqtt.client_id_prefix, config.name
            );
            let (publisher, poll) = Publisher::with_queue(
                &shared.endpoint,
                &client_id,
                shared.mqtt.origin_marker(),
                WINDOW * config.batch_size + 64,
            );
            publishers.push(publisher);
            polls.push(poll);
        }
        let stats = Arc::new(DownlinkStats::default());
        let pause = Arc::new(Pause::new(paused));
        let shutdown = CancellationToken::new();
        let hard_stop = CancellationToken::new();
        events::DownlinkPaused {
            downlink: &config.name,
            paused,
        }
        .emit();
        let task = Task {
            config: config.clone(),
            kind,
            connection: connection.clone(),
            blocked: publishers.iter().map(|_| AtomicBool::new(false)).collect(),
            publishers,
            polls,
            dead_letter: shared.dead_letter.clone(),
            stats: stats.clone(),
            paused: pause.watch(),
            shutdown: shutdown.clone(),
            hard_stop: hard_stop.clone(),
        };
        Ok(DownlinkHandle {
            config: config.clone(),
            started_at: std::time::Instant::now(),
            stats,
            pause,
            shutdown,
            hard_stop,
            task: Some(tokio::spawn(task.run())),
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn is_paused(&self) -> bool {
        self.pause.is_paused()
    }

    /// Stops (or resumes) consuming; the group's offsets and the MQTT session are kept, and
    /// a batch being published is finished and committed.
    pub fn set_paused(&self, paused: bool) {
        if self.pause.set(paused) {
            events::DownlinkPaused {
                downlink: &self.config.name,
                paused,
            }
            .emit();
        }
    }

    pub fn is_stopping(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Stops taking messages, finishes (publishes and commits) the batch in hand, leaves the
    /// group; past `limit`, abandons the batch uncommitted, for the source to deliver again.
    pub async fn stop(&mut self, limit: Duration) -> bool {
        self.shutdown.cancel();
        let Some(task) = &mut self.task else {
            return true;
        };
        if tokio::time::timeout(limit, &mut *task).await.is_ok() {
            self.task = None;
            return true;
        }
        self.hard_stop.cancel();
        if tokio::time::timeout(Duration::from_secs(10), &mut *task)
            .await
            .is_err()
        {
            task.abort();
        }
        self.task = None;
        false
    }
}

impl Drop for DownlinkHandle {
    /// A handle dropped without `stop` still ends its downlink (finishing its batch).
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

struct Task {
    config: DownlinkConfig,
    kind: SourceKind,
    connection: ConnectionConfig,
    /// The MQTT connections; a partition's or queue's messages always take the same one.
    publishers: Vec<Publisher>,
    /// Their poll tasks, ended with them.
    polls: Vec<JoinHandle<()>>,
    dead_letter: Arc<DeadLetter>,
    stats: Arc<DownlinkStats>,
    paused: watch::Receiver<bool>,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
    /// Per connection: a publish could not be queued, later ones wait for the next `requeue`.
    blocked: Vec<AtomicBool>,
}

/// What settling the oldest flight came to.
enum Settled {
    Done,
    /// To publish again after a pause: the error, and how many messages wait.
    Again(String, usize),
    Abandoned,
}

/// A message waiting for its PUBACK.
struct Pending {
    index: usize,
    /// The connection it goes through.
    lane: usize,
    publication: Publication,
    /// PUBACKs with a failure reason so far.
    refusals: u32,
    /// The broker's answer to the copy sent last; `None` when it could not be queued.
    ack: Option<Ack>,
}

/// A batch on its way: polled, its publishes queued, waiting for the broker.
struct Flight {
    batch: Vec<SourceMessage>,
    /// Not yet acknowledged, in source order.
    pending: Vec<Pending>,
    dead: Vec<Unpublishable>,
    /// Acknowledged so far.
    published: usize,
}

/// A message the batch could not publish, and why.
struct Unpublishable {
    index: usize,
    kind: &'static str,
    error: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct DownlinkError(String);

/// The connection a partition's or queue's messages take, out of `lanes`: always the same, so
/// that they are published in order.
fn lane(partition: &Partition, lanes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    partition.hash(&mut hasher);
    (hasher.finish() % lanes.max(1) as u64) as usize
}

impl Task {
    async fn run(mut self) {
        let Some(mut source) = self.open().await else {
            self.close_publisher().await;
            return;
        };
        self.stats.started.store(true, Ordering::Relaxed);
        tracing::info!(downlink = %self.config.name, topic = %self.config.topic, "downlink running");
        let mut paused = false;
        // A batch polled as the downlink was paused.
        let mut held: Option<Vec<SourceMessage>> = None;
        // Up to two batches on their way: the next one's publishes keep the connection busy
        // while the broker acknowledges the last of the one before.
        let mut window: VecDeque<Flight> = VecDeque::new();
        let mut backoff = BACKOFF;
        loop {
            let want = *self.paused.borrow_and_update();
            let stopping = self.shutdown.is_cancelled();
            if stopping && window.is_empty() {
                break;
            }
            if window.len() < WINDOW && !stopping && !want {
                if paused {
                    source.set_paused(false).await;
                    paused = false;
                }
                let batch = match held.take() {
                    Some(batch) => batch,
                    None => {
                        let wait = if window.is_empty() {
                            POLL_WAIT
                        } else {
                            Duration::ZERO
                        };
                        let batch = source.poll(self.config.batch_size, wait).await;
                        self.stats
                            .received
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        if !batch.is_empty() {
                            events::DownlinkReceived {
                                downlink: &self.config.name,
                                count: batch.len(),
                            }
                            .emit();
                        }
                        batch
                    }
                };
                if *self.paused.borrow() && !batch.is_empty() {
                    // Paused while the poll waited: published after the resume (a poll is
                    // never cut short, since what it took out of the client would be gone).
                    held = Some(batch);
                    continue;
                }
                if !batch.is_empty() {
                    match self.launch(batch).await {
                        Some(flight) => window.push_back(flight),
                        None => break,
                    }
                    continue;
                }
            }
            if window.is_empty() {
                if want && !paused {
                    source.set_paused(true).await;
                    paused = true;
                }
                if paused {
                    let handle_gone = tokio::select! {
                        _ = source.idle(POLL_WAIT) => false,
                        changed = self.paused.changed() => changed.is_err(),
                        _ = self.shutdown.cancelled() => false,
                    };
                    if handle_gone {
                        break;
                    }
                }
                continue;
            }
            match self.settle(&mut window).await {
                Settled::Done => {
                    backoff = BACKOFF;
                    let flight = window.pop_front().expect("a flight settled");
                    let mut dead = flight.dead;
                    dead.sort_by_key(|d| d.index);
                    if !self.dead_letter(&flight.batch, &dead).await {
                        break;
                    }
                    source.commit(&next_offsets(&flight.batch)).await;
                }
                Settled::Again(error, count) => {
                    self.failing(&error, count);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.hard_stop.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    self.requeue(&mut window);
                }
                // Abandoned at a hard stop: not committed, so the source delivers it again.
                Settled::Abandoned => break,
            }
        }
        source.close().await;
        self.close_publisher().await;
        tracing::info!(downlink = %self.config.name, "downlink stopped");
    }

    async fn close_publisher(&mut self) {
        let polls = std::mem::take(&mut self.polls);
        let shuts = self
            .publishers
            .iter()
            .zip(polls)
            .map(|(p, poll)| p.shut(poll));
        futures::future::join_all(shuts).await;
    }

    /// The source, retried until it starts or the downlink stops.
    async fn open(&self) -> Option<Box<dyn Source>> {
        let mut wait = Duration::from_secs(1);
        loop {
            let opened: Result<Box<dyn Source>, BoxError> = match self.kind {
                SourceKind::Kafka => self
                    .connection
                    .settings::<KafkaConnectionConfig>()
                    .ok_or_else(|| "not a kafka connection".into())
                    .and_then(|c| KafkaSource::start(c, &self.config))
                    .map(|s| Box::new(s) as Box<dyn Source>),
                SourceKind::Rocketmq => {
                    match self.connection.settings::<RocketmqConnectionConfig>() {
                        None => Err("not a rocketmq connection".into()),
                        Some(c) => RocketmqSource::start(c, &self.config)
                            .await
                            .map(|s| Box::new(s) as Box<dyn Source>),
                    }
                }
            };
            match opened {
                Ok(source) => return Some(source),
                Err(e) => {
                    let error = format!("cannot start the consumer: {e}");
                    tracing::error!(downlink = %self.config.name, %error, "downlink source");
                    self.stats.error(error);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.shutdown.cancelled() => return None,
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    /// Makes `batch`'s publishes and queues them, in order; what cannot be published is set
    /// aside for the dead-letter path. `None` when a hard stop came first.
    async fn launch(&self, batch: Vec<SourceMessage>) -> Option<Flight> {
        // The broker's packet limit is known once connected: nothing is sent before.
        let limits = loop {
            let limits: Option<Vec<Option<u32>>> = self
                .publishers
                .iter()
                .map(|p| p.max_packet_size())
                .collect();
            if let Some(limits) = limits {
                break limits;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = self.hard_stop.cancelled() => return None,
            }
        };
        let mut pending: Vec<Pending> = Vec::with_capacity(batch.len());
        let mut dead: Vec<Unpublishable> = Vec::new();
        for (index, msg) in batch.iter().enumerate() {
            let publication = self
                .config
                .mqtt_topic
                .render(msg)
                .map_err(|e| ("invalid_topic", format!("no MQTT topic for it: {e}")))
                .and_then(|topic| {
                    msg.publication(self.kind, topic, &self.config)
                        .map_err(|e| ("invalid_property", e))
                });
            let lane = lane(&msg.partition, self.publishers.len());
            match publication {
                Ok(p) => {
                    let size = p.packet_size(self.publishers[lane].marker());
                    match limits[lane].filter(|max| size > *max as usize) {
                        Some(max) => dead.push(Unpublishable {
                            index,
                            kind: "too_large",
                            error: format!(
                                "a {size}-byte PUBLISH is larger than the broker's maximum \
                                 packet size of {max} bytes"
                            ),
                        }),
                        None => pending.push(Pending {
                            index,
                            lane,
                            ack: self.queue(lane, &p),
                            publication: p,
                            refusals: 0,
                        }),
                    }
                }
                Err((kind, error)) => dead.push(Unpublishable { index, kind, error }),
            }
        }
        Some(Flight {
            batch,
            pending,
            dead,
            published: 0,
        })
    }

    /// Queues one publish on connection `lane`, unless one before it on that connection could
    /// not be: then nothing overtakes it.
    fn queue(&self, lane: usize, p: &Publication) -> Option<Ack> {
        if self.blocked[lane].load(Ordering::Relaxed) {
            return None;
        }
        match self.publishers[lane].queue(p.clone()) {
            Ok(ack) => Some(ack),
            Err(e) => {
                tracing::debug!(downlink = %self.config.name, error = %e, "publish not queued");
                self.blocked[lane].store(true, Ordering::Relaxed);
                None
            }
        }
    }

    /// After a failure: everything still on its way is queued again, in order.
    fn requeue(&self, window: &mut VecDeque<Flight>) {
        for blocked in &self.blocked {
            blocked.store(false, Ordering::Relaxed);
        }
        for flight in window.iter_mut() {
            for p in &mut flight.pending {
                p.ack = self.queue(p.lane, &p.publication);
            }
        }
    }

    /// Waits for the oldest flight's acknowledgements. Done when every message is
    /// acknowledged or refused for good; otherwise what failed and everything after it (in
    /// this flight and the later ones) is to be published again.
    async fn settle(&self, window: &mut VecDeque<Flight>) -> Settled {
        let flight = window.front_mut().expect("a flight to settle");
        let count = flight.pending.len();
        // Generous: a lost connection fails every wait at once, and the keep-alive finds a
        // silent one; this only bounds a broker that keeps the connection but never answers.
        let timeout = PUBLISH_TIMEOUT + Duration::from_millis(10) * count as u32;
        let waits = flight.pending.iter_mut().map(|p| {
            let ack = p.ack.take();
            async move {
                match ack {
                    Some(ack) => Some(ack.wait(timeout).await),
                    None => None,
                }
            }
        });
        let outcomes = tokio::select! {
            o = futures::future::join_all(waits) => o,
            _ = self.hard_stop.cancelled() => return Settled::Abandoned,
        };
        let failed_from = outcomes
            .iter()
            .position(|o| !matches!(o, Some(Ok(()))))
            .unwrap_or(count);
        let error = outcomes.iter().find_map(|o| match o {
            Some(Err(PublishError::Refused(reason))) => {
                Some(format!("the MQTT broker refused a message: {reason:?}"))
            }
            Some(Err(e)) => Some(e.to_string()),
            None => Some("the publish could not be queued".to_owned()),
            Some(Ok(())) => None,
        });
        let pending = std::mem::take(&mut flight.pending);
        let mut again = Vec::new();
        for (i, (mut p, outcome)) in pending.into_iter().zip(outcomes).enumerate() {
            if i < failed_from {
                flight.published += 1;
                continue;
            }
            if let Some(Err(PublishError::Refused(reason))) = outcome {
                p.refusals += 1;
                // A topic or payload the broker will never take goes at once; other refusals
                // (quota, the broker's own errors) after a few tries; a refusal for want of
                // rights is held for the operator to mend the ACL.
                let never = matches!(
                    reason,
                    PubAckReason::TopicNameInvalid | PubAckReason::PayloadFormatInvalid
                );
                let enough = p.refusals >= REFUSALS && reason != PubAckReason::NotAuthorized;
                if never || enough {
                    flight.dead.push(Unpublishable {
                        index: p.index,
                        kind: "refused",
                        error: format!("the MQTT broker refused it: {reason:?}"),
                    });
                    continue;
                }
            }
            // Failed, or acknowledged after one that failed: sent again to keep the order.
            again.push(p);
        }
        let published = std::mem::take(&mut flight.published);
        if published > 0 {
            self.stats
                .published
                .fetch_add(published as u64, Ordering::Relaxed);
            self.stats.last_publish.store(now_ms(), Ordering::Relaxed);
            self.stats.failing_since.store(0, Ordering::Relaxed);
            events::DownlinkPublished {
                downlink: &self.config.name,
                count: published,
            }
            .emit();
        }
        if again.is_empty() {
            return Settled::Done;
        }
        flight.pending = again;
        let later: usize = window.iter().skip(1).map(|f| f.pending.len()).sum();
        let count = window[0].pending.len() + later;
        Settled::Again(error.unwrap_or_else(|| "not acknowledged".into()), count)
    }

    /// Counts `count` messages held back by `error`.
    fn failing(&self, error: &str, count: usize) {
        self.stats
            .retried
            .fetch_add(count as u64, Ordering::Relaxed);
        self.stats.failing(error.to_owned());
        events::DownlinkRetry {
            downlink: &self.config.name,
            count,
            error,
        }
        .emit();
    }

    /// Writes the unpublishable messages to the dead-letter destination, retrying until it
    /// takes them; false when abandoned at a hard stop.
    async fn dead_letter(&self, batch: &[SourceMessage], dead: &[Unpublishable]) -> bool {
        if dead.is_empty() {
            return true;
        }
        let messages: Vec<_> = dead
            .iter()
            .map(|d| batch[d.index].as_message(self.kind))
            .collect();
        let errors: Vec<SinkError> = dead
            .iter()
            .map(|d| SinkError::new(d.kind, Retry::Permanent, DownlinkError(d.error.clone())))
            .collect();
        let entries: Vec<DeadLetterEntry<'_>> = messages
            .iter()
            .zip(&errors)
            .map(|(msg, error)| DeadLetterEntry {
                msg,
                error,
                attempts: 1,
            })
            .collect();
        loop {
            let sent = tokio::select! {
                sent = self.dead_letter.send(&self.config.name, &entries) => sent,
                _ = self.hard_stop.cancelled() => return false,
            };
            match sent {
                Ok(()) => break,
                Err(e) => {
                    let error = e.to_string();
                    events::DeadLetterFailed {
                        route: &self.config.name,
                        count: entries.len(),
                        error: &error,
                    }
                    .emit();
                    self.stats
                        .failing(format!("dead-letter write failed: {error}"));
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = self.hard_stop.cancelled() => return false,
                    }
                }
            }
        }
        for d in dead {
            events::DownlinkDeadLettered {
                downlink: &self.config.name,
                kind: d.kind,
                error: &d.error,
            }
            .emit();
        }
        self.stats
            .dead_lettered
            .fetch_add(dead.len() as u64, Ordering::Relaxed);
        true
    }
}
