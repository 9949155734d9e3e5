//! The dead-letter path: messages a sink refused for good are written here, as JSON objects
//! carrying the route, the error and the original message (the `record.rs` shape), to a
//! JSON-lines file or an MQTT topic; or to a connection's sink (`[dead_letter] connection`, or
//! a route's own `dead_letter`), as the message itself with the error in its properties. Only
//! once written are they acknowledged to the broker; a failing dead-letter destination holds
//! them back like a failing sink.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use async_trait::async_trait;

use crate::config::{DeadLetterConfig, MqttConfig, DEFAULT_DEAD_LETTER_PATH};
use crate::connectors::file::FileWriter;
use crate::connectors::mqtt::{Endpoint, OptionsError, PublishError, Publisher};
use crate::connectors::{Connection, SinkContext};
use crate::flow::{BoxError, DeadLetterEntry, DeadLetters};
use crate::message::now_ms;
use crate::record::Record;

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("writing the dead-letter file failed: {0}")]
    File(#[from] std::io::Error),
    #[error("publishing to the dead-letter topic failed: {0}")]
    Publish(#[from] PublishError),
    #[error("encoding a dead letter failed: {0}")]
    Encode(#[from] serde_json::Error),
}

#[derive(Serialize)]
struct Entry<'a> {
    route: &'a str,
    error: String,
    error_kind: &'static str,
    /// Sends that failed before the message was given up (1 for a refusal).
    attempts: u32,
    failed_at: u64,
    message: Record<'a>,
}

pub enum DeadLetter {
    File(Arc<FileWriter>),
    /// `[dead_letter] connection = "NAME"`: that connection's sink.
    Sink(SinkDeadLetters),
    Mqtt {
        publisher: Publisher,
        topic: String,
        /// The publisher's poll task, ended by `close`.
        task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    },
}

impl DeadLetter {
    /// The destination `config` names; `mqtt` is the default broker, for a dead-letter topic;
    /// `connection` gives a connection's client, for a connection's sink.
    pub async fn build(
        config: &DeadLetterConfig,
        mqtt: Option<&MqttConfig>,
        connection: impl Fn(&str) -> Option<Connection>,
    ) -> std::io::Result<Self> {
        if let Some(own) = &config.sink {
            let missing = || std::io::Error::other(format!("no connection \"{}\"", own.connection));
            let live = connection(&own.connection).ok_or_else(missing)?;
            let context = SinkContext {
                name: "dead-letter",
                client: "dead-letter",
                ordered: false,
                in_flight: 1024,
                vocabulary: crate::template::Vocabulary::Mqtt,
            };
            let sink = live
                .sink(&context, &own.sink)
                .map_err(|e| std::io::Error::other(format!("[dead_letter]: {e}")))?;
            return Ok(DeadLetter::Sink(SinkDeadLetters::new(sink)));
        }
        if let Some(topic) = &config.topic {
            let missing = || std::io::Error::other("a dead-letter topic needs [mqtt]");
            let mqtt = mqtt.ok_or_else(missing)?;
            let endpoint = Endpoint::new(mqtt)
                .map_err(|e: OptionsError| std::io::Error::other(format!("[mqtt] {e}")))?;
            let id = format!("{}-dead-letter", mqtt.client_id_prefix);
            let (publisher, task) = Publisher::start(&endpoint, &id, mqtt.origin_marker());
            return Ok(DeadLetter::Mqtt {
                publisher,
                topic: topic.clone(),
                task: Mutex::new(Some(task)),
            });
        }
        let path = config
            .path
            .clone()
            .unwrap_or_else(|| DEFAULT_DEAD_LETTER_PATH.into());
        let writer = FileWriter::open(&path, true).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("dead-letter file {}: {e}", path.display()),
            )
        })?;
        Ok(DeadLetter::File(Arc::new(writer)))
    }

    /// Writes every entry; Ok only when all are stored.
    pub async fn write(
        &self,
        route: &str,
        items: &[DeadLetterEntry<'_>],
    ) -> Result<(), DeadLetterError> {
        let shaped: Vec<_> = items.iter().map(|item| item.msg.as_dead_letter()).collect();
        let entries = items.iter().zip(&shaped).map(|(item, msg)| Entry {
            route,
            error: item.error.to_string(),
            error_kind: item.error.kind(),
            attempts: item.attempts,
            failed_at: now_ms(),
            message: Record::new(msg),
        });
        match self {
            DeadLetter::Sink(_) => unreachable!("sent through `DeadLetters::send`"),
            DeadLetter::File(writer) => {
                let mut buf = Vec::new();
                for entry in entries {
                    serde_json::to_writer(&mut buf, &entry)?;
                    buf.push(b'\n');
                }
                Ok(writer.write(buf).await?)
            }
            DeadLetter::Mqtt {
                publisher, topic, ..
            } => {
                for (entry, shaped) in entries.zip(&shaped) {
                    let mut payload = serde_json::to_vec(&entry)?;
                    // A message too large for the broker would make the entry too large too:
                    // it goes without its payload rather than never.
                    let limit = publisher.max_packet_size().flatten().map(|m| m as usize);
                    let overhead = topic.len() + 64;
                    if let Some(max) = limit.filter(|max| payload.len() + overhead > *max) {
                        let mut msg = shaped.clone().into_owned();
                        let left_out = std::mem::take(&mut msg.payload).len();
                        let entry = Entry {
                            error: format!(
                                "{}; its {left_out}-byte payload is left out: the broker takes \
                                 packets of at most {max} bytes",
                                entry.error
                            ),
                            message: Record::new(&msg),
                            ..entry
                        };
                        payload = serde_json::to_vec(&entry)?;
                    }
                    publisher
                        .publish(topic, payload.into(), Duration::from_secs(10))
                        .await?;
                }
                Ok(())
            }
        }
    }

    pub async fn close(&self) {
        if let DeadLetter::Sink(sink) = self {
            sink.close().await;
        }
        if let DeadLetter::Mqtt {
            publisher, task, ..
        } = self
        {
            let task = task.lock().unwrap_or_else(|p| p.into_inner()).take();
            match task {
                Some(task) => publisher.shut(task).await,
                None => publisher.disconnect().await,
            }
        }
    }
}

#[async_trait]
impl DeadLetters for DeadLetter {
    async fn send(&self, route: &str, entries: &[DeadLetterEntry<'_>]) -> Result<(), BoxError> {
        match self {
            DeadLetter::Sink(sink) => sink.send(route, entries).await,
            _ => Ok(self.write(route, entries).await?),
        }
    }
}

/// A route's own dead-letter destination: any connection's sink. Each dead letter is the
/// message as it came (a record read from Kafka or RocketMQ with where it was read, as
/// `source.*` user properties), with why it failed in user properties, which a Kafka sink
/// writes as headers (as Kafka Connect's dead-letter queue does): `mqbridge.error`,
/// `mqbridge.error_kind`, `mqbridge.route`, `mqbridge.attempts` and `mqbridge.failed_at`; a
/// record read from Kafka or RocketMQ also says `source.topic` (`{system}:{topic}`).
pub struct SinkDeadLetters {
    sink: Arc<dyn crate::flow::Sink>,
}

impl SinkDeadLetters {
    pub fn new(sink: Arc<dyn crate::flow::Sink>) -> Self {
        SinkDeadLetters { sink }
    }

    /// The message a dead letter of `route` sends.
    pub fn letter(
        route: &str,
        entry: &DeadLetterEntry<'_>,
        failed_at: u64,
    ) -> crate::message::Message {
        let mut msg = entry.msg.as_dead_letter().into_owned();
        // Where the route's rules sent it is for the route's sink, not this one.
        msg.destination = None;
        let user = &mut msg.properties.user_properties;
        if entry.msg.origin.is_some() {
            // A sink that does not write the topic (Kafka) keeps where it was read.
            user.push(("source.topic".into(), msg.topic.clone()));
        }
        user.push(("mqbridge.error".into(), entry.error.to_string()));
        user.push(("mqbridge.error_kind".into(), entry.error.kind().into()));
        user.push(("mqbridge.route".into(), route.into()));
        user.push(("mqbridge.attempts".into(), entry.attempts.to_string()));
        user.push(("mqbridge.failed_at".into(), failed_at.to_string()));
        msg
    }
}

#[async_trait]
impl DeadLetters for SinkDeadLetters {
    async fn send(&self, route: &str, entries: &[DeadLetterEntry<'_>]) -> Result<(), BoxError> {
        let at = now_ms();
        let letters: Vec<_> = entries.iter().map(|e| Self::letter(route, e, at)).collect();
        let batch: Vec<&crate::message::Message> = letters.iter().collect();
        let outcomes = self.sink.send(&batch).await;
        let failed = outcomes.iter().filter_map(|o| o.as_ref().err()).next();
        match (failed, outcomes.len() == batch.len()) {
            (None, true) => Ok(()),
            (Some(e), _) => Err(format!("the dead-letter sink refused: {e}").into()),
            (None, false) => Err("the dead-letter sink gave no outcome for some letters".into()),
        }
    }

    async fn close(&self) {
        self.sink.close().await;
    }
}
