//! A route's Kafka sink: renders each message's topic, key and headers, hands the batch to the
//! producer and waits for every delivery report. A full librdkafka queue is backpressure: the
//! batch waits for room, it is not failed.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::{join_all, Either};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;

use super::config::KafkaSinkConfig;
use super::connection::ProducerSlot;
use super::error::KafkaSinkError;
use super::headers::headers;
use crate::flow::{Sink, SinkError};
use crate::message::Message;
use crate::template::Template;
use crate::topic::check_kafka_topic;

#[derive(Debug, thiserror::Error)]
pub enum RouteSinkError {
    #[error("a Kafka route needs a topic")]
    NoTopic,
    #[error("{0}")]
    InvalidTopic(String),
}

pub struct KafkaRouteSink {
    producer: Arc<ProducerSlot>,
    topic: Template,
    /// Set when the topic is a literal, checked once at build time.
    literal_topic: Option<String>,
    /// `None`: the default, `{topic}` for a message read from MQTT; a record read from Kafka
    /// or RocketMQ keeps its own key.
    key: Option<Template>,
}

impl KafkaRouteSink {
    pub fn new(
        producer: Arc<ProducerSlot>,
        route: &KafkaSinkConfig,
    ) -> Result<Self, RouteSinkError> {
        let topic = route.topic.clone().ok_or(RouteSinkError::NoTopic)?;
        let key = route.key.clone();
        let literal_topic = topic.as_literal().map(str::to_owned);
        if let Some(t) = &literal_topic {
            check_kafka_topic(t).map_err(RouteSinkError::InvalidTopic)?;
        }
        Ok(KafkaRouteSink {
            producer,
            topic,
            literal_topic,
            key,
        })
    }

    async fn send_all(&self, batch: &[&Message]) -> Vec<Result<(), KafkaSinkError>> {
        let (generation, producer) = self.producer.get();
        let mut pending = Vec::with_capacity(batch.len());
        for msg in batch {
            pending.push(match self.enqueue(&producer, msg).await {
                Ok(delivery) => Either::Left(delivery),
                Err(e) => Either::Right(std::future::ready(Err(e))),
            });
        }
        let results = join_all(pending).await;
        if results.iter().any(Result::is_err) {
            let broken = results
                .iter()
                .any(|r| matches!(r, Err(e) if e.needs_new_producer()));
            self.producer.replace_if_broken(generation, broken);
        }
        if self.producer.generation() != generation {
            // Possibly the last handle on a replaced producer, whose teardown blocks.
            tokio::task::spawn_blocking(move || drop(producer));
        }
        results
    }

    /// The record key: what a rule set, else the template, else the default.
    fn key<'m>(&self, msg: &'m Message) -> Option<std::borrow::Cow<'m, str>> {
        if let Some(key) = msg.to_key() {
            return Some(key.into());
        }
        match (&self.key, &msg.origin) {
            (Some(template), _) => Some(template.render(msg).into()),
            (None, Some(origin)) => origin.key.as_deref().map(Into::into),
            (None, None) => Some(msg.topic.as_str().into()),
        }
    }

    /// Queues one record; the returned future resolves with its delivery report.
    async fn enqueue(
        &self,
        producer: &super::connection::KafkaProducer,
        msg: &Message,
    ) -> Result<impl std::future::Future<Output = Result<(), KafkaSinkError>>, KafkaSinkError> {
        let rendered;
        let topic = match (msg.to_topic(), &self.literal_topic) {
            (None, Some(t)) => t.as_str(),
            (set, _) => {
                rendered = set.map_or_else(|| self.topic.render(msg), str::to_owned);
                check_kafka_topic(&rendered).map_err(KafkaSinkError::InvalidTopic)?;
                rendered.as_str()
            }
        };
        let key = self.key(msg);
        let mut record = FutureRecord::to(topic)
            .payload(&msg.payload[..])
            .headers(headers(msg))
            .timestamp(msg.timestamp_ms as i64);
        if let Some(key) = &key {
            record = record.key(key.as_ref());
        }
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    return Ok(async move {
                        match delivery.await {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err((e, _))) => Err(KafkaSinkError::from_kafka(e)),
                            Err(_) => Err(KafkaSinkError::Canceled),
                        }
                    })
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(KafkaSinkError::from_kafka(e)),
            }
        }
    }
}

#[async_trait]
impl Sink for KafkaRouteSink {
    async fn send(&self, batch: &[&Message]) -> Vec<Result<(), SinkError>> {
        let results = self.send_all(batch).await;
        results
            .into_iter()
            .map(|r| r.map_err(SinkError::from))
            .collect()
    }
}
