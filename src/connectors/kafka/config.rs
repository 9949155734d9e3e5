//! `type = "kafka"`: the connection's settings, the keys a route takes when it delivers to Kafka
//! (`topic`, `key`) and those of a `source` that reads a topic (`topic`, `group`, `start`).
//! Every `///` comment on a field is user documentation.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::Secret;
use crate::sources::StartFrom;
use crate::template::Template;

/// `[connections.NAME]` with `type = "kafka"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct KafkaConnectionConfig {
    /// Comma-separated `host:port` list of Kafka brokers.
    pub bootstrap_servers: String,
    /// Record batch compression: none, gzip, snappy, lz4 or zstd. Default none.
    #[serde(default)]
    pub compression: Compression,
    /// How long one delivery may take, retries included, before the bridge counts it as
    /// failed and retries it itself. Default "30s".
    #[serde(default = "default_delivery_timeout", with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// librdkafka settings passed as they are (SASL, TLS, `linger.ms`, ...). Values are strings.
    /// `acks` and `enable.idempotence` are fixed by the bridge's delivery guarantee.
    #[serde(default)]
    pub librdkafka: BTreeMap<String, Secret>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// The keys of a route that delivers to Kafka.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct KafkaSinkConfig {
    /// Kafka topic: a literal or a template such as "traffic-{topic.2}". Required.
    pub topic: Option<Template>,
    /// Record key template. Default "{topic}" for a message read from MQTT, which keeps each
    /// MQTT topic's order within one partition; a record read from Kafka or RocketMQ keeps its
    /// own key.
    pub key: Option<Template>,
}

/// The keys of a route's `source` on Kafka: a topic read by a consumer group. Each record's
/// offset is committed once it and everything before it of its partition was delivered or
/// dead-lettered.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct KafkaSourceConfig {
    /// The topic to read.
    pub topic: String,
    /// Consumer group. Default "mqbridge-{route name}". Its committed offsets are where the
    /// route goes on after a restart.
    pub group: Option<String>,
    /// Where a group without committed offsets starts: "latest" (default) or "earliest".
    #[serde(default)]
    pub start: StartFrom,
}

impl KafkaSourceConfig {
    /// The consumer group (completed with the route's name when the file is read).
    pub fn group(&self) -> &str {
        self.group.as_deref().unwrap_or_default()
    }
}

fn default_delivery_timeout() -> Duration {
    Duration::from_secs(30)
}
