//! `[[routes]]`: the keys every route takes, its optional `source` (a Kafka or RocketMQ topic
//! instead of the MQTT broker), and what they mean at run time (order, the reader's spec).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::model::default_true;
use crate::connectors::RouteSinkConfig;
use crate::rules::RuleSpec;
use crate::sources::{ReadSpec, StartFrom};

/// `[[routes]]`: a set of topic filters, consumed by a shared-subscription group and delivered
/// to one connection. These are the keys every route takes; the keys that belong to the
/// connection's kind (a Kafka `topic`, ...) are read by that kind into `sink`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RouteConfig<S = RouteSinkConfig> {
    /// Unique route name, used in client ids, metrics and logs. Letters, digits, `-` and `_`.
    pub name: String,
    /// MQTT topic filters (`+` and `#` wildcards) to consume. Not for a route with a `source`.
    #[serde(default)]
    pub filters: Vec<String>,
    /// Read a Kafka or RocketMQ topic as a consumer group instead of the MQTT broker.
    pub source: Option<RouteSource>,
    /// Name of the `[connections.NAME]` to deliver to.
    pub connection: String,
    /// Shared-subscription group: the bridge subscribes to `$share/{group}/{filter}`.
    /// Default: the route name.
    pub share_group: Option<String>,
    /// MQTT clients sharing the group in this process. Default 1.
    #[serde(default = "default_consumers")]
    pub consumers: u32,
    /// Subscription QoS: 1 (at least once) or 0 (best effort). Default 1.
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Most messages handed to the sink at once (1 to 10000). Default 500.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// How long a batch may wait to fill up. Default "0s": send what has arrived at once.
    #[serde(default, with = "humantime_serde")]
    pub max_wait: Duration,
    /// Keep each MQTT topic's order: at most one batch holding a topic's messages is in
    /// delivery at a time, so a failed message is retried before any later batch of its topic
    /// goes out (within one batch, the sink keeps the order it keeps). Default: the connection
    /// kind's (true for Kafka and files, false for functions).
    pub ordered: Option<bool>,
    /// Batches in delivery at once, across topics (1 to 64). Default 4.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Sends of a message that the destination may fail before the message is dead-lettered
    /// (a function that ran and failed; a failure on the way there is retried without
    /// counting). Default 3.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// A condition over each message (Vector Remap Language): a message for which it is
    /// false is acknowledged and not delivered (counted as filtered). See "Rules".
    #[serde(rename = "where")]
    pub filter: Option<String>,
    /// A program over each message (Vector Remap Language) that may reshape its payload, set
    /// its user properties or headers and where it goes, split it into several, or drop it.
    pub transform: Option<String>,
    /// A JSON Schema file (draft 2020-12) each payload must match; one that does not is
    /// dead-lettered (`schema_invalid`).
    pub schema: Option<PathBuf>,
    /// The schema file's content when the configuration was read, so that a reload restarts
    /// the route when the file changed though its name did not.
    #[serde(skip)]
    pub schema_read: Option<Vec<u8>>,
    /// Start this route. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The settings that belong to the connection's kind.
    #[serde(skip)]
    pub sink: S,
}

/// A route's `source = { connection = "...", topic = "..." }`: a Kafka or RocketMQ topic read
/// by a consumer group. Each message's offset is committed once it and everything before it
/// of its partition (or queue) was delivered or dead-lettered.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct RouteSource {
    /// Name of the `[connections.NAME]` to read: a `kafka` or `rocketmq` connection.
    pub connection: String,
    /// The topic to read.
    pub topic: String,
    /// RocketMQ tag filter: `*` (every message) or tags joined by `||`. Default "*".
    #[serde(default = "default_tags")]
    pub tags: String,
    /// Consumer group. Default "mqbridge-{route name}".
    pub group: Option<String>,
    /// Where a group without committed offsets starts: "latest" (default) or "earliest".
    #[serde(default)]
    pub start: StartFrom,
}

fn default_tags() -> String {
    "*".into()
}

impl<S> RouteConfig<S> {
    /// What the route's reader reads, when it has a `source`.
    pub fn read_spec(&self) -> Option<ReadSpec> {
        let s = self.source.as_ref()?;
        Some(ReadSpec {
            name: self.name.clone(),
            topic: s.topic.clone(),
            tags: s.tags.clone(),
            group: (s.group.clone()).unwrap_or_else(|| format!("mqbridge-{}", self.name)),
            start: s.start,
        })
    }
}

impl<S> RouteConfig<S> {
    /// Its rules, as written.
    pub fn rules(&self) -> RuleSpec {
        RuleSpec {
            filter: self.filter.clone(),
            transform: self.transform.clone(),
            schema: self.schema.clone(),
        }
    }

    pub fn share_group(&self) -> &str {
        self.share_group.as_deref().unwrap_or(&self.name)
    }

    /// The same route with its kind's settings.
    pub fn with_sink<T>(self, sink: T) -> RouteConfig<T> {
        RouteConfig {
            name: self.name,
            filters: self.filters,
            source: self.source,
            connection: self.connection,
            share_group: self.share_group,
            consumers: self.consumers,
            qos: self.qos,
            batch_size: self.batch_size,
            max_wait: self.max_wait,
            ordered: self.ordered,
            concurrency: self.concurrency,
            max_attempts: self.max_attempts,
            filter: self.filter,
            transform: self.transform,
            schema: self.schema,
            schema_read: self.schema_read,
            enabled: self.enabled,
            sink,
        }
    }
}

impl RouteConfig {
    /// Whether the route keeps per-topic order (its own setting, else its kind's default).
    pub fn is_ordered(&self) -> bool {
        self.ordered
            .unwrap_or_else(|| self.sink.ordered_by_default())
    }
}

fn default_consumers() -> u32 {
    1
}
fn default_qos() -> u8 {
    1
}
fn default_batch_size() -> usize {
    500
}
fn default_concurrency() -> usize {
    4
}
fn default_max_attempts() -> u32 {
    3
}
