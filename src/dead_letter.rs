//! The dead-letter path: messages a sink refused for good are written here, as JSON objects
//! carrying the route, the error and the original message (the `record.rs` shape), to a
//! JSON-lines file or an MQTT topic. Only once written are they acknowledged to the broker; a
//! failing dead-letter destination holds them back like a failing sink.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::{DeadLetterConfig, MqttConfig};
use crate::message::{now_ms, Message};
use crate::mqtt::{Endpoint, PublishError, Publisher};
use crate::record::Record;
use crate::sinks::file::FileWriter;
use crate::sinks::SinkError;

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

/// A message to dead-letter, with why.
pub struct DeadLetterEntry<'a> {
    pub msg: &'a Message,
    pub error: &'a SinkError,
    pub attempts: u32,
}

pub enum DeadLetter {
    File(Arc<FileWriter>),
    Mqtt { publisher: Publisher, topic: String },
}

impl DeadLetter {
    pub async fn build(
        config: &DeadLetterConfig,
        endpoint: &Endpoint,
        mqtt: &MqttConfig,
    ) -> std::io::Result<(Self, Option<tokio::task::JoinHandle<()>>)> {
        if let Some(topic) = &config.topic {
            let id = format!("{}-dead-letter", mqtt.client_id_prefix);
            let (publisher, task) = Publisher::start(endpoint, &id, mqtt.origin_marker());
            return Ok((
                DeadLetter::Mqtt {
                    publisher,
                    topic: topic.clone(),
                },
                Some(task),
            ));
        }
        let path = config
            .path
            .clone()
            .unwrap_or_else(|| crate::config::DEFAULT_DEAD_LETTER_PATH.into());
        let writer = FileWriter::open(&path, true).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("dead-letter file {}: {e}", path.display()),
            )
        })?;
        Ok((DeadLetter::File(Arc::new(writer)), None))
    }

    /// Writes every entry; Ok only when all are stored.
    pub async fn send(
        &self,
        route: &str,
        items: &[DeadLetterEntry<'_>],
    ) -> Result<(), DeadLetterError> {
        let entries = items.iter().map(|item| Entry {
            route,
            error: item.error.to_string(),
            error_kind: item.error.kind(),
            attempts: item.attempts,
            failed_at: now_ms(),
            message: Record::new(item.msg),
        });
        match self {
            DeadLetter::File(writer) => {
                let mut buf = Vec::new();
                for entry in entries {
                    serde_json::to_writer(&mut buf, &entry)?;
                    buf.push(b'\n');
                }
                Ok(writer.write(buf).await?)
            }
            DeadLetter::Mqtt { publisher, topic } => {
                for entry in entries {
                    let payload = serde_json::to_vec(&entry)?;
                    publisher
                        .publish(topic, payload.into(), Duration::from_secs(10))
                        .await?;
                }
                Ok(())
            }
        }
    }

    pub async fn close(&self) {
        if let DeadLetter::Mqtt { publisher, .. } = self {
            publisher.disconnect().await;
        }
    }
}
