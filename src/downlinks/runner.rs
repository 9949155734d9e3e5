//! A running downlink: one task that polls its source, publishes each batch to the MQTT broker
//! in source order (pipelined, one PUBLISH per message), waits for every acknowledgement, sends
//! unpublishable messages to the dead-letter destination, and only then commits the batch's
//! offsets. A failed publish (the broker down, a timeout) is retried, in order, for as long as
//! it takes; nothing later in the batch is committed before it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::PubAckReason;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::{DownlinkConfig, SourceKind};
use super::kafka::KafkaSource;
use super::message::SourceMessage;
use super::rocketmq::RocketmqSource;
use super::source::{next_offsets, Source};
use crate::config::{ConnectionConfig, MqttConfig};
use crate::dead_letter::{DeadLetter, DeadLetterEntry};
use crate::events;
use crate::message::now_ms;
use crate::mqtt::{Ack, Endpoint, Publication, PublishError, Publisher};
use crate::sinks::kafka::KafkaConnectionConfig;
use crate::sinks::rocketmq::RocketmqConnectionConfig;
use crate::sinks::{BoxError, Retry, SinkError};

/// How long one PUBLISH may wait for its PUBACK before it is sent again.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);
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
    pub last_error: Mutex<Option<(String, u64)>>,
}

impl DownlinkStats {
    fn error(&self, message: String) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some((message, now_ms()));
    }
}

pub struct DownlinkHandle {
    pub config: DownlinkConfig,
    pub stats: Arc<DownlinkStats>,
    paused: watch::Sender<bool>,
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
        let client_id = format!("{}-downlink-{}", shared.mqtt.client_id_prefix, config.name);
        let (publisher, _poll) = Publisher::with_queue(
            &shared.endpoint,
            &client_id,
            shared.mqtt.origin_marker(),
            config.batch_size + 64,
        );
        let stats = Arc::new(DownlinkStats::default());
        let (paused_tx, paused_rx) = watch::channel(paused);
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
            publisher,
            dead_letter: shared.dead_letter.clone(),
            stats: stats.clone(),
            paused: paused_rx,
            shutdown: shutdown.clone(),
            hard_stop: hard_stop.clone(),
        };
        Ok(DownlinkHandle {
            config: config.clone(),
            stats,
            paused: paused_tx,
            shutdown,
            hard_stop,
            task: Some(tokio::spawn(task.run())),
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }

    /// Stops (or resumes) consuming; the group's offsets and the MQTT session are kept, and
    /// a batch being published is finished and committed.
    pub fn set_paused(&self, paused: bool) {
        if self.paused.send_replace(paused) != paused {
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

struct Task {
    config: DownlinkConfig,
    kind: SourceKind,
    connection: ConnectionConfig,
    publisher: Publisher,
    dead_letter: Arc<DeadLetter>,
    stats: Arc<DownlinkStats>,
    paused: watch::Receiver<bool>,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
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

impl Task {
    async fn run(mut self) {
        let Some(mut source) = self.open().await else {
            self.publisher.disconnect().await;
            return;
        };
        self.stats.started.store(true, Ordering::Relaxed);
        tracing::info!(downlink = %self.config.name, topic = %self.config.topic, "downlink running");
        let mut paused = false;
        // A batch polled as the downlink was paused.
        let mut held: Option<Vec<SourceMessage>> = None;
        while !self.shutdown.is_cancelled() {
            let want = *self.paused.borrow_and_update();
            if want != paused {
                source.set_paused(want).await;
                paused = want;
            }
            if paused {
                tokio::select! {
                    _ = source.idle(POLL_WAIT) => {}
                    _ = self.paused.changed() => {}
                    _ = self.shutdown.cancelled() => {}
                }
                continue;
            }
            let batch = match held.take() {
                Some(batch) => batch,
                None => {
                    let batch = source.poll(self.config.batch_size, POLL_WAIT).await;
                    if batch.is_empty() {
                        continue;
                    }
                    self.stats
                        .received
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    batch
                }
            };
            if *self.paused.borrow() {
                // Paused while the poll waited: published after the resume (a poll is never
                // cut short, since what it took out of the client would be gone).
                held = Some(batch);
                continue;
            }
            if !self.deliver(&batch).await {
                // Abandoned at a hard stop: not committed, so the source delivers it again.
                break;
            }
            source.commit(&next_offsets(&batch)).await;
        }
        source.close().await;
        self.publisher.disconnect().await;
        tracing::info!(downlink = %self.config.name, "downlink stopped");
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

    /// Publishes `batch` and dead-letters what cannot be published; true once every message
    /// is one or the other, false when abandoned at a hard stop.
    async fn deliver(&self, batch: &[SourceMessage]) -> bool {
        let mut todo: Vec<(usize, Publication)> = Vec::with_capacity(batch.len());
        let mut dead: Vec<Unpublishable> = Vec::new();
        for (index, msg) in batch.iter().enumerate() {
            match self.config.mqtt_topic.render(msg) {
                Ok(topic) => todo.push((index, msg.publication(self.kind, topic, &self.config))),
                Err(error) => dead.push(Unpublishable {
                    index,
                    kind: "invalid_topic",
                    error: format!("no MQTT topic for it: {error}"),
                }),
            }
        }
        let mut backoff = Duration::from_millis(250);
        while !todo.is_empty() {
            let (published, failed, refused, error) = self.publish(std::mem::take(&mut todo)).await;
            dead.extend(refused);
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
            if failed.is_empty() {
                break;
            }
            let error = error.unwrap_or_else(|| "not acknowledged".into());
            self.stats
                .retried
                .fetch_add(failed.len() as u64, Ordering::Relaxed);
            let _ = self.stats.failing_since.compare_exchange(
                0,
                now_ms(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            self.stats.error(error.clone());
            events::DownlinkRetry {
                downlink: &self.config.name,
                count: failed.len(),
                error: &error,
            }
            .emit();
            todo = failed;
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.hard_stop.cancelled() => return false,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        dead.sort_by_key(|d| d.index);
        self.dead_letter(batch, &dead).await
    }

    /// One try at publishing `todo` in order: how many were acknowledged, those to try again
    /// (in order), those the broker will never take, and the first error seen.
    async fn publish(
        &self,
        todo: Vec<(usize, Publication)>,
    ) -> (
        usize,
        Vec<(usize, Publication)>,
        Vec<Unpublishable>,
        Option<String>,
    ) {
        let mut refused = Vec::new();
        let mut queued: Vec<((usize, Publication), Option<Ack>)> = Vec::with_capacity(todo.len());
        let mut first_error = None;
        let limit = self.publisher.max_packet_size();
        let mut blocked = false;
        for (index, p) in todo {
            if let Some(max) = limit {
                let size = p.packet_size(self.publisher.marker());
                if size > max as usize {
                    refused.push(Unpublishable {
                        index,
                        kind: "too_large",
                        error: format!(
                            "a {size}-byte PUBLISH is larger than the broker's maximum packet size of {max} bytes"
                        ),
                    });
                    continue;
                }
            }
            // Once one cannot be queued, the rest waits too: nothing overtakes it.
            let ack = match blocked {
                true => None,
                false => match self.publisher.queue(p.clone()) {
                    Ok(ack) => Some(ack),
                    Err(e) => {
                        blocked = true;
                        first_error.get_or_insert(e.to_string());
                        None
                    }
                },
            };
            queued.push(((index, p), ack));
        }
        let waits = queued.iter_mut().map(|(_, ack)| {
            let ack = ack.take();
            async move {
                match ack {
                    Some(ack) => Some(ack.wait(PUBLISH_TIMEOUT).await),
                    None => None,
                }
            }
        });
        let outcomes = tokio::select! {
            o = futures::future::join_all(waits) => o,
            _ = self.hard_stop.cancelled() => return (0, Vec::new(), Vec::new(), Some("stopped".into())),
        };
        let mut published = 0;
        let mut failed = Vec::new();
        for ((item, _), outcome) in queued.into_iter().zip(outcomes) {
            match outcome {
                Some(Ok(())) => published += 1,
                Some(Err(PublishError::Refused(
                    reason @ (PubAckReason::TopicNameInvalid | PubAckReason::PayloadFormatInvalid),
                ))) => refused.push(Unpublishable {
                    index: item.0,
                    kind: "refused",
                    error: format!("the MQTT broker refused it: {reason:?}"),
                }),
                Some(Err(e)) => {
                    first_error.get_or_insert_with(|| e.to_string());
                    failed.push(item);
                }
                None => failed.push(item),
            }
        }
        (published, failed, refused, first_error)
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
            match self.dead_letter.send(&self.config.name, &entries).await {
                Ok(()) => break,
                Err(e) => {
                    events::DeadLetterFailed {
                        route: &self.config.name,
                        count: entries.len(),
                        error: &e.to_string(),
                    }
                    .emit();
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
