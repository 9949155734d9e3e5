//! `type = "mqtt"` (and `[mqtt]`, the default broker): the connection's settings, the keys a
//! route takes when it delivers to a broker (`MqttSinkConfig`: the topic template and the
//! PUBLISH's flags) and when it reads one (`MqttSourceConfig`: filters, share group,
//! consumers). Every `///` comment on a field is user documentation.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::Secret;

/// `[mqtt]`, the default broker, or `[connections.NAME]` with `type = "mqtt"`: a broker that
/// routes read (shared-subscription consumers) and deliver to (pipelined publishers).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MqttConfig {
    /// Broker address: `mqtt://host:port` (default port 1883), or `mqtts://host:port` for TLS
    /// (default port 8883).
    pub url: String,
    /// MQTT account name; give the bridge a least-privilege account that may only subscribe to
    /// the topics its routes read (and publish to the dead-letter topic, if one is set).
    pub username: Option<String>,
    /// MQTT password. Write `${ENV_VAR}` to take it from the environment, or use
    /// `password_file`. Never logged.
    pub password: Option<Secret>,
    /// Read the password from this file (its trailing newline is ignored) instead.
    pub password_file: Option<PathBuf>,
    /// Consumer client ids are `{prefix}-{route}-{n}`: stable across restarts, so that the
    /// broker keeps each consumer's session. Default "mqbridge"; give each instance of a
    /// scaled-out deployment its own prefix.
    #[serde(default = "default_client_id_prefix")]
    pub client_id_prefix: String,
    /// How long the broker keeps a consumer's session (its subscription and unacknowledged
    /// messages) while the bridge is away. Default "1h".
    #[serde(default = "default_session_expiry", with = "humantime_serde")]
    pub session_expiry: Duration,
    /// Per-consumer in-flight window: the most QoS 1/2 messages the broker may send before the
    /// bridge acknowledges them. The bridge enforces it on its side too (it stops reading).
    /// Throughput to a sink is about this window ÷ the sink's latency per consumer. Default 1024.
    #[serde(default = "default_receive_maximum")]
    pub receive_maximum: u16,
    /// MQTT keep-alive interval, 5s or more. Default "30s".
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Per-consumer in-flight bytes: the most payload bytes a consumer holds before it stops
    /// reading (one larger message is still taken alone). Default 8388608 (8 MiB).
    #[serde(default = "default_max_inflight_bytes")]
    pub max_inflight_bytes: u64,
    /// Largest MQTT packet the bridge accepts, in bytes, told to the broker. A broker drops a
    /// larger message for this client without a trace (MQTT v5 §3.1.2.25), so the default is the
    /// protocol's limit, 268435455: a message too large for the sink then reaches the bridge
    /// and goes to the dead-letter destination instead.
    #[serde(default = "default_max_packet_size")]
    pub max_packet_size: u32,
    /// TLS client settings, for `mqtts://` URLs.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Names of the user properties through which the broker tells who published a message.
    #[serde(default)]
    pub publisher: PublisherProperties,
    /// The user property the bridge marks what it publishes with (dead letters on an MQTT
    /// topic; downlinks), its value the client id prefix. Routes skip (acknowledge without
    /// delivering, counted in `mqbridge_messages_skipped_total`) every message that carries
    /// it, so that two opposite routes cannot echo a message forever. Default
    /// "mqbridge-origin"; empty turns marking and skipping off.
    #[serde(default = "default_origin_property")]
    pub origin_property: String,
}

/// `[mqtt.tls]`
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TlsConfig {
    /// PEM file with the certificate authorities to trust. Default: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for brokers that authenticate clients by certificate.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

/// `[mqtt.publisher]`: where the broker puts the publisher's identity, when it does.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PublisherProperties {
    /// User property carrying the publisher's client id (fills `{client_id}` and the
    /// `mqtt.publisher.client.id` header). Unset: unknown.
    pub client_id_property: Option<String>,
    /// User property carrying the publisher's username. Unset: unknown.
    pub username_property: Option<String>,
    /// User property carrying the publisher's host or address. Unset: unknown.
    pub host_property: Option<String>,
}

fn default_client_id_prefix() -> String {
    "mqbridge".into()
}
fn default_session_expiry() -> Duration {
    Duration::from_secs(3600)
}
impl MqttConfig {
    /// The user property (name, value) the bridge marks what it publishes with, unless off.
    pub fn origin_marker(&self) -> Option<(String, String)> {
        (!self.origin_property.is_empty())
            .then(|| (self.origin_property.clone(), self.client_id_prefix.clone()))
    }
}

fn default_origin_property() -> String {
    "mqbridge-origin".into()
}
fn default_receive_maximum() -> u16 {
    1024
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}
/// The most an MQTT packet can hold (a Remaining Length of 268,435,455).
pub const PROTOCOL_MAX_PACKET_SIZE: u32 = 268_435_455;

fn default_max_packet_size() -> u32 {
    PROTOCOL_MAX_PACKET_SIZE
}
fn default_max_inflight_bytes() -> u64 {
    8 * 1024 * 1024
}

/// The keys of a route that delivers to a broker: each message becomes one PUBLISH.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct MqttSinkConfig {
    /// The topic to publish each message to: a template. Over a message read from MQTT:
    /// `{topic}`, `{topic.N}`, `{user.NAME}`, `{message_id}`, `{client_id}`; over a Kafka record
    /// or RocketMQ message: `{key}`, `{tag}`, `{topic}`, `{topic.N}`, `{property.NAME}` /
    /// `{header.NAME}`. A placeholder with no value makes the message unpublishable: it goes to
    /// the dead-letter destination. Default `{topic}` for a route reading MQTT; required for
    /// others.
    pub mqtt_topic: Option<String>,
    /// QoS of the PUBLISH: 1 (the broker acknowledges; the source is acknowledged after its
    /// PUBACK) or 0 (acknowledged once written to the connection). Default 1.
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Publish with the retain flag. Default false.
    #[serde(default)]
    pub retain: bool,
    /// MQTT v5 Message Expiry Interval of every PUBLISH (e.g. "10m"): the broker drops it for
    /// a device that did not get it in time. Default: the message's own, when it carries one.
    #[serde(default, with = "humantime_serde::option")]
    pub message_expiry: Option<Duration>,
    /// MQTT connections the route publishes through; one order key's messages (a topic's, a
    /// partition's or a queue's) always take the same one, so they stay in order. One
    /// connection carries about 60,000 messages a second into mosquitto on a small machine.
    /// Default 2.
    #[serde(default = "default_mqtt_connections")]
    pub mqtt_connections: usize,
}

/// The keys of a route's `source` on a broker (for the default broker they may also stand in
/// the route itself, as `[[routes]]` always wrote them).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct MqttSourceConfig {
    /// MQTT topic filters (`+` and `#` wildcards) to consume, without `$share/`.
    #[serde(default)]
    pub filters: Vec<String>,
    /// Shared-subscription group: the bridge subscribes to `$share/{group}/{filter}`.
    /// Default: the route name.
    pub share_group: Option<String>,
    /// MQTT clients sharing the group in this process. Default 1.
    #[serde(default = "default_consumers")]
    pub consumers: u32,
    /// Subscription QoS: 1 (at least once) or 0 (best effort). Default 1.
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Read through the connections that the routes on this broker delivering to the same
    /// connection share (each route's SUBSCRIBE with a subscription identifier of its own).
    /// false: connections of the route's own, `{prefix}-{route}-{n}`. Default true.
    #[serde(default = "default_true")]
    pub shared_connections: bool,
}

fn default_true() -> bool {
    true
}

impl MqttSourceConfig {
    /// The share group (completed with the route's name when the file is read).
    pub fn share_group(&self) -> &str {
        self.share_group.as_deref().unwrap_or_default()
    }
}

fn default_qos() -> u8 {
    1
}
fn default_consumers() -> u32 {
    1
}
fn default_mqtt_connections() -> usize {
    2
}
