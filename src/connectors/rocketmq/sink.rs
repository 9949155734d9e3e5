//! A route's RocketMQ sink: each message rendered (topic, tag and keys templates, the MQTT
//! metadata as properties), refused alone when RocketMQ could never take it (an invalid topic,
//! an empty or too large body); the rest sent in batches per topic under the broker's 4 MiB
//! batch limit, or, on an ordered route, one by one to the queue that a hash of the MQTT topic
//! picks, so that a topic's messages keep their order in one queue. A message counts as
//! delivered on `SEND_OK` only (unless the connection accepts unflushed sends).

use std::sync::Arc;

use async_trait::async_trait;
use rocketmq_client_rust::{
    MessageQueueSelector, SelectMessageQueueByHash, SendResult, SendStatus,
};
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message as RocketMessage;
use rocketmq_model::common::message::MessageTrait;

use super::config::RocketmqSinkConfig;
use super::connection::{classify, describe, RocketmqConnection, MAX_MESSAGE};
use super::properties::properties;
use crate::flow::{Retry, Sink, SinkError};
use crate::message::Message;
use crate::template::Template;
use crate::topic::check_rocketmq_topic;

/// A message of the batch: its index, the RocketMQ message and its size in a batch.
type Rendered = (usize, RocketMessage, usize);

/// Bytes a message adds to a batch beside its body and properties (RocketMQ's batch encoding).
const PER_MESSAGE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum RocketmqError {
    #[error("{0}")]
    Client(String),
    #[error("the broker stored the message but answered {0:?}")]
    NotStored(SendStatus),
    #[error("{0}")]
    Refused(String),
    #[error("not sent: an earlier send of the batch failed, and later ones wait to keep order")]
    NotSent,
}

pub struct RocketmqSink {
    connection: Arc<RocketmqConnection>,
    topic: Template,
    tag: Option<Template>,
    /// `None`: the default, `{message_id}` for a message read from MQTT; a record read from
    /// Kafka or RocketMQ keeps its own key.
    keys: Option<Template>,
    ordered: bool,
}

impl RocketmqSink {
    pub fn new(
        connection: Arc<RocketmqConnection>,
        route: &RocketmqSinkConfig,
        ordered: bool,
    ) -> Self {
        RocketmqSink {
            connection,
            topic: route.topic.clone().unwrap_or_else(Template::topic),
            tag: route.tag.clone(),
            keys: route.keys.clone(),
            ordered,
        }
    }

    /// The RocketMQ message for `msg`, or why RocketMQ could never take it.
    fn render(&self, msg: &Message) -> Result<(RocketMessage, usize), SinkError> {
        let refuse = |kind, text: String| {
            SinkError::new(kind, Retry::Permanent, RocketmqError::Refused(text))
        };
        let topic = (msg.to_topic()).map_or_else(|| self.topic.render(msg), str::to_owned);
        check_rocketmq_topic(&topic).map_err(|e| refuse("invalid_topic", e))?;
        if msg.payload.is_empty() {
            return Err(refuse(
                "empty_body",
                "RocketMQ takes no message with an empty body".into(),
            ));
        }
        let mut builder = RocketMessage::builder()
            .topic(topic.as_str())
            .body(msg.payload.clone());
        let tag = match (msg.to_tag(), &self.tag) {
            (Some(tag), _) => Some(tag.to_owned()),
            (None, Some(t)) => Some(t.render(msg)),
            (None, None) => msg.origin.as_ref().and_then(|o| o.tag.clone()),
        };
        if let Some(tag) = tag.filter(|t| !t.is_empty()) {
            builder = builder.tags(tag.as_str());
        }
        let keys = match (msg.to_key(), &self.keys, &msg.origin) {
            (Some(keys), _, _) => keys.to_owned(),
            (None, Some(t), _) => t.render(msg),
            (None, None, Some(origin)) => origin.key.clone().unwrap_or_default(),
            (None, None, None) => msg.id.hyphenated().to_string(),
        };
        if !keys.is_empty() {
            builder = builder.key(keys.as_str());
        }
        let mut rocket = builder
            .build()
            .map_err(|e| refuse("invalid_message", e.to_string()))?;
        let mut size = msg.payload.len() + PER_MESSAGE + topic.len();
        for (name, value) in properties(msg) {
            size += name.len() + value.len() + 2;
            rocket
                .put_user_property(name.as_str().into(), value.as_str().into())
                .map_err(|e| refuse("invalid_property", format!("property {name}: {e}")))?;
        }
        if size > MAX_MESSAGE {
            return Err(refuse(
                "too_large",
                format!("{size} bytes with its properties, over RocketMQ's {MAX_MESSAGE}"),
            ));
        }
        Ok((rocket, size))
    }

    fn outcome(
        &self,
        sent: Result<Option<SendResult>, rocketmq_client_rust::ClientError>,
    ) -> Result<(), SinkError> {
        match sent {
            Ok(Some(r)) if r.send_status == SendStatus::SendOk => Ok(()),
            Ok(Some(_)) if self.connection.accept_unflushed => Ok(()),
            Ok(Some(r)) => Err(SinkError::new(
                "not_stored",
                Retry::Retriable,
                RocketmqError::NotStored(r.send_status),
            )),
            // Only callback and automatic-batch sends answer without a result.
            Ok(None) => Ok(()),
            Err(e) => {
                let (kind, retry) = classify(&e);
                Err(SinkError::new(
                    kind,
                    retry,
                    RocketmqError::Client(describe(&e)),
                ))
            }
        }
    }

    /// One by one, each to the queue its MQTT topic hashes to; stops at the first failure.
    async fn send_ordered(
        &self,
        batch: &[&Message],
        rendered: Vec<Option<(RocketMessage, usize)>>,
    ) -> Vec<Option<Result<(), SinkError>>> {
        let timeout = self.connection.send_timeout.as_millis() as u64;
        let mut out = Vec::with_capacity(batch.len());
        let mut failed = false;
        for (msg, rocket) in batch.iter().zip(rendered) {
            let Some((rocket, _)) = rocket else {
                out.push(None);
                continue;
            };
            if failed {
                out.push(Some(Err(not_sent())));
                continue;
            }
            let select = |queues: &[MessageQueue], m: &RocketMessage, key: &String| {
                SelectMessageQueueByHash.select(queues, m, key)
            };
            let sent = self
                .connection
                .producer
                .send_with_selector_timeout(rocket, select, msg.topic.clone(), timeout)
                .await;
            let outcome = self.outcome(sent);
            failed = outcome.is_err();
            out.push(Some(outcome));
        }
        out
    }

    /// In batches per topic, each under the broker's batch limit.
    async fn send_batched(
        &self,
        rendered: Vec<Option<(RocketMessage, usize)>>,
    ) -> Vec<Option<Result<(), SinkError>>> {
        let timeout = self.connection.send_timeout.as_millis() as u64;
        let mut out: Vec<Option<Result<(), SinkError>>> = rendered.iter().map(|_| None).collect();
        // The messages of each topic, in batch order.
        let mut groups: Vec<(String, Vec<Rendered>)> = Vec::new();
        for (i, r) in rendered.into_iter().enumerate() {
            if let Some((rocket, size)) = r {
                let topic = rocket.topic().to_string();
                match groups.iter_mut().find(|(t, _)| *t == topic) {
                    Some((_, members)) => members.push((i, rocket, size)),
                    None => groups.push((topic, vec![(i, rocket, size)])),
                }
            }
        }
        for (_, members) in groups {
            let mut chunk: Vec<(usize, RocketMessage)> = Vec::new();
            let mut used = 0;
            let mut members = members.into_iter().peekable();
            while let Some((i, rocket, size)) = members.next() {
                used += size;
                chunk.push((i, rocket));
                let full = members
                    .peek()
                    .is_none_or(|(_, _, next)| used + next > MAX_MESSAGE);
                if !full {
                    continue;
                }
                let (indexes, messages): (Vec<usize>, Vec<RocketMessage>) =
                    std::mem::take(&mut chunk).into_iter().unzip();
                used = 0;
                let sent = match messages.len() {
                    1 => {
                        let one = messages.into_iter().next().expect("one message");
                        self.connection
                            .producer
                            .send_with_timeout(one, timeout)
                            .await
                    }
                    _ => self
                        .connection
                        .producer
                        .send_batch_with_timeout(messages, timeout)
                        .await
                        .map(Some),
                };
                let outcome = self.outcome(sent);
                for i in indexes {
                    out[i] = Some(outcome.clone());
                }
            }
        }
        out
    }
}

fn not_sent() -> SinkError {
    SinkError::new("not_sent", Retry::Retriable, RocketmqError::NotSent)
}

#[async_trait]
impl Sink for RocketmqSink {
    async fn send(&self, batch: &[&Message]) -> Vec<Result<(), SinkError>> {
        let mut refused: Vec<Option<SinkError>> = Vec::with_capacity(batch.len());
        let mut rendered = Vec::with_capacity(batch.len());
        for msg in batch {
            match self.render(msg) {
                Ok(r) => {
                    refused.push(None);
                    rendered.push(Some(r));
                }
                Err(e) => {
                    refused.push(Some(e));
                    rendered.push(None);
                }
            }
        }
        let sent = match self.ordered {
            true => self.send_ordered(batch, rendered).await,
            false => self.send_batched(rendered).await,
        };
        sent.into_iter()
            .zip(refused)
            .map(|(sent, refused)| match (sent, refused) {
                (_, Some(e)) => Err(e),
                (Some(outcome), None) => outcome,
                (None, None) => Err(not_sent()),
            })
            .collect()
    }
}
