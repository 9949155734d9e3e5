//! `type = "kafka"`: the connection's settings and the keys a Kafka route takes (`topic`,
//! `key`). Every `///` comment on a field is user documentation.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::settings::Secret;
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

/// The keys of a `[[routes]]` entry whose connection is a Kafka one.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct KafkaRouteConfig {
    /// Kafka topic: a literal or a template such as "traffic-{topic.2}". Required.
    pub topic: Option<Template>,
    /// Record key template. Default "{topic}", which keeps each MQTT topic's order within one
    /// partition.
    pub key: Option<Template>,
}

fn default_delivery_timeout() -> Duration {
    Duration::from_secs(30)
}
