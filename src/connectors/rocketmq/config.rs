//! `type = "rocketmq"`: the connection's settings (name servers, producer group, ACL keys), the
//! keys a route takes when it delivers to RocketMQ (topic, tag and keys templates) and those of
//! a `source` that reads a topic (topic, tag filter, group, start). Every `///` comment on a
//! field is user documentation.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::Secret;
use crate::sources::StartFrom;
use crate::template::Template;

/// `[connections.NAME]` with `type = "rocketmq"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RocketmqConnectionConfig {
    /// Name server addresses, `host:port` each.
    pub namesrv: Vec<String>,
    /// The producer group. Default "mqbridge".
    #[serde(default = "default_producer_group")]
    pub producer_group: String,
    /// ACL access key (with `secret_key`).
    pub access_key: Option<Secret>,
    /// Read the access key from this file instead.
    pub access_key_file: Option<PathBuf>,
    /// ACL secret key (`${ENV}`; never logged).
    pub secret_key: Option<Secret>,
    /// Read the secret key from this file instead.
    pub secret_key_file: Option<PathBuf>,
    /// How long one send may take. Default "3s".
    #[serde(default = "default_send_timeout", with = "humantime_serde")]
    pub send_timeout: Duration,
    /// Take a send the broker stored but could not flush or replicate in time
    /// (`FLUSH_DISK_TIMEOUT`, `FLUSH_SLAVE_TIMEOUT`, `SLAVE_NOT_AVAILABLE`) as delivered.
    /// Default false: retried, since the message may not survive the broker's failure.
    #[serde(default)]
    pub accept_unflushed: bool,
}

/// The keys of a route that delivers to RocketMQ.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RocketmqSinkConfig {
    /// RocketMQ topic: a literal or a template such as "chargers-{topic.2}" (letters, digits,
    /// `-`, `_`, `%` and `|`; at most 127). Required.
    pub topic: Option<Template>,
    /// Tag template, e.g. "{topic.3}". Default: no tag for a message read from MQTT; a message
    /// read from RocketMQ keeps its own.
    pub tag: Option<Template>,
    /// Keys template (the console finds a message by key). Default "{message_id}" for a message
    /// read from MQTT; a record read from Kafka or RocketMQ keeps its own key.
    pub keys: Option<Template>,
}

/// The keys of a route's `source` on RocketMQ: a topic read by a consumer group. Each
/// message's offset is committed once it and everything before it of its queue was delivered
/// or dead-lettered.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RocketmqSourceConfig {
    /// The topic to read.
    pub topic: String,
    /// Tag filter: `*` (every message) or tags joined by `||`. Default "*".
    #[serde(default = "default_tags")]
    pub tags: String,
    /// Consumer group. Default "mqbridge-{route name}". Its committed offsets are where the
    /// route goes on after a restart.
    pub group: Option<String>,
    /// Where a group without committed offsets starts: "latest" (default) or "earliest".
    #[serde(default)]
    pub start: StartFrom,
}

impl RocketmqSourceConfig {
    /// The consumer group (completed with the route's name when the file is read).
    pub fn group(&self) -> &str {
        self.group.as_deref().unwrap_or_default()
    }
}

fn default_tags() -> String {
    "*".into()
}

fn default_producer_group() -> String {
    "mqbridge".into()
}
fn default_send_timeout() -> Duration {
    Duration::from_secs(3)
}
