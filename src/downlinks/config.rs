//! `[[downlinks]]`: what a downlink reads (a Kafka or RocketMQ topic, as a consumer group) and
//! how each message becomes an MQTT PUBLISH (the `mqtt_topic` template, QoS, retain, expiry).

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;

use crate::settings::Check;

use crate::config::ConnectionConfig;
use crate::connectors::mqtt::{PublishSettings, TopicTemplate};
use crate::rules::RuleSpec;
use crate::sources::{ReadSpec, StartFrom};

/// `[[downlinks]]`: a Kafka or RocketMQ topic read by a consumer group and published to the
/// MQTT broker, one PUBLISH per message. A message counts as consumed (its offset committed)
/// only once the broker acknowledged it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DownlinkConfig {
    /// Unique name (among routes and downlinks), used in the client id, metrics and logs.
    /// Letters, digits, `-` and `_`.
    pub name: String,
    /// Name of the `[connections.NAME]` to read from: a `kafka` or `rocketmq` connection.
    pub connection: String,
    /// The Kafka or RocketMQ topic to read.
    pub topic: String,
    /// RocketMQ tag filter: `*` (every message) or tags joined by `||`. Default "*".
    #[serde(default = "default_tags")]
    pub tags: String,
    /// Consumer group. Default "mqbridge-{name}". The group's committed offsets are where the
    /// downlink goes on after a restart.
    pub group: Option<String>,
    /// The MQTT topic to publish each message to: literal text with `{key}` (the Kafka record
    /// key or the RocketMQ keys), `{tag}` (RocketMQ), `{property.NAME}` or `{header.NAME}` (a
    /// RocketMQ user property or a Kafka header; the two spellings are the same) and `{topic}`
    /// (the source topic). A placeholder with no value makes the message unpublishable: it
    /// goes to the dead-letter destination.
    pub mqtt_topic: TopicTemplate,
    /// QoS of the PUBLISH: 1 (the broker acknowledges; the offset is committed after its
    /// PUBACK) or 0 (committed once written to the connection). Default 1.
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Publish with the retain flag. Default false.
    #[serde(default)]
    pub retain: bool,
    /// MQTT v5 Message Expiry Interval of every PUBLISH (e.g. "10m"): the broker drops it
    /// for a device that did not get it in time. Default: none (the source's
    /// `mqtt.message.expiry.interval` / `mqtt_message_expiry_interval`, when it carries one).
    #[serde(default, with = "humantime_serde::option")]
    pub message_expiry: Option<Duration>,
    /// Where a group that has no committed offset yet starts: "latest" (messages written from
    /// now on) or "earliest" (everything the topic still holds). Default "latest": a new
    /// downlink does not replay old commands to devices.
    #[serde(default)]
    pub start: StartFrom,
    /// MQTT connections the downlink publishes through; a partition's or queue's messages
    /// always take the same one, so they stay in order. One connection carries about 60,000
    /// messages a second into mosquitto on a small machine. Default 2.
    #[serde(default = "default_mqtt_connections")]
    pub mqtt_connections: usize,
    /// Messages published before their offsets are committed together. Default 256.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Batches being published at once, across partitions or queues (1 to 64); a partition
    /// keeps at most two of them. Default 4.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Refusals of a message by the broker (a PUBACK reason code that is neither permanent
    /// nor for want of rights) before it is dead-lettered; a lost connection is retried
    /// without counting. Default 5.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// A condition over each message (Vector Remap Language): a message for which it is
    /// false is committed and not published (counted as filtered). See "Rules".
    #[serde(rename = "where")]
    pub filter: Option<String>,
    /// A program over each message (Vector Remap Language): its payload, properties and MQTT
    /// topic (`.destination.topic`). See "Rules".
    pub transform: Option<String>,
    /// A JSON Schema file (draft 2020-12) each payload must match; one that does not is
    /// dead-lettered (`schema_invalid`).
    pub schema: Option<std::path::PathBuf>,
    /// The schema file's content when the configuration was read (a changed file restarts
    /// the downlink at a reload).
    #[serde(skip)]
    pub schema_read: Option<Vec<u8>>,
    /// Set to false to keep the downlink defined but not running. Default true.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
}

fn default_tags() -> String {
    "*".into()
}
fn default_qos() -> u8 {
    1
}
fn default_mqtt_connections() -> usize {
    2
}
fn default_batch_size() -> usize {
    256
}
fn default_concurrency() -> usize {
    4
}
fn default_max_attempts() -> u32 {
    5
}
fn default_enabled() -> bool {
    true
}

impl DownlinkConfig {
    /// Its rules, as written.
    pub fn rules(&self) -> RuleSpec {
        RuleSpec {
            filter: self.filter.clone(),
            transform: self.transform.clone(),
            schema: self.schema.clone(),
        }
    }

    pub fn group(&self) -> String {
        self.group
            .clone()
            .unwrap_or_else(|| format!("mqbridge-{}", self.name))
    }

    /// What its reader reads.
    pub fn read_spec(&self) -> ReadSpec {
        ReadSpec {
            name: self.name.clone(),
            topic: self.topic.clone(),
            tags: self.tags.clone(),
            group: self.group(),
            start: self.start,
        }
    }

    /// How its messages are published.
    pub fn publish_settings(&self) -> PublishSettings {
        PublishSettings {
            topic: self.mqtt_topic.clone(),
            qos: self.qos,
            retain: self.retain,
            message_expiry: self.message_expiry,
        }
    }

    /// Checks what needs more than types; `connection` is the named connection, when defined.
    pub fn check(&self, connection: Option<&ConnectionConfig>, check: &mut Check<'_>) {
        check.rules(&self.rules());
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            check.field(
                "name",
                format!("\"{}\": letters, digits, `-` and `_` only", self.name),
            );
        }
        if self.qos > 1 {
            check.field("qos", format!("{}: must be 0 or 1", self.qos));
        }
        if !(1..=16).contains(&self.mqtt_connections) {
            check.field("mqtt_connections", "must be between 1 and 16");
        }
        check.delivery(self.batch_size, self.concurrency, self.max_attempts);
        if let Some(expiry) = self.message_expiry {
            if expiry < Duration::from_secs(1) || expiry.as_secs() > u32::MAX as u64 {
                check.field("message_expiry", "must be between 1s and 136 years");
            }
        }
        if let Err(e) = self.mqtt_topic.check_static() {
            check.field("mqtt_topic", e);
        }
        let Some(connection) = connection else {
            return;
        };
        if !connection.readable() {
            check.field(
                "connection",
                format!(
                    "\"{}\" is a {} connection; a downlink reads a kafka or rocketmq connection",
                    self.connection,
                    connection.kind()
                ),
            );
            return;
        }
        if self.group.as_deref() == Some("") {
            check.field("group", "empty");
            return;
        }
        let uses_tag = self.mqtt_topic.uses_tag();
        connection.check_reader(&self.read_spec(), uses_tag, check);
    }
}

/// Route and downlink names share one space: pause and resume name either.
pub fn check_names<'a>(
    routes: impl IntoIterator<Item = &'a str>,
    downlink: &str,
    seen: &mut HashSet<String>,
    check: &mut Check<'_>,
) {
    for route in routes {
        if route == downlink {
            check.field("name", "a route has this name too; names are shared");
            return;
        }
    }
    if !seen.insert(downlink.to_owned()) {
        check.field("name", "used by another downlink too");
    }
}
