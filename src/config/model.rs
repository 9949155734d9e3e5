//! The configuration file's shape. Every `///` comment on a field is user documentation: the
//! README's config reference and `mqbridge example-config` repeat it.
//!
//! Unknown keys are not rejected by serde here: the loader (`load.rs`) collects them with
//! `serde_ignored` so that a typo is reported together with every other problem in the file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The whole file, after loading and validation.
#[derive(Debug, Clone)]
pub struct Config {
    pub mqtt: MqttConfig,
    pub connections: BTreeMap<String, ConnectionConfig>,
    pub routes: Vec<RouteConfig>,
    pub dead_letter: DeadLetterConfig,
    pub admin: AdminConfig,
    /// How long a graceful shutdown may take to flush and acknowledge in-flight messages.
    pub shutdown_timeout: Duration,
}

/// Top-level keys that are not tables.
#[derive(Debug, Clone, Deserialize)]
pub struct TopLevel {
    /// How long a graceful shutdown may spend delivering and acknowledging in-flight messages
    /// before it disconnects anyway (the broker then redelivers them). Default "30s".
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

/// `[mqtt]`: the broker the bridge consumes from.
#[derive(Debug, Clone, Deserialize)]
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
    /// bridge acknowledges them. The bridge enforces it on its side too. Default 256.
    #[serde(default = "default_receive_maximum")]
    pub receive_maximum: u16,
    /// MQTT keep-alive interval, 5s or more. Default "30s".
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Largest MQTT packet the bridge accepts, in bytes (told to the broker, which must not
    /// send larger ones). Default 1048576 (1 MiB).
    #[serde(default = "default_max_packet_size")]
    pub max_packet_size: u32,
    /// TLS client settings, for `mqtts://` URLs.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Names of the user properties through which the broker tells who published a message.
    #[serde(default)]
    pub publisher: PublisherProperties,
}

/// `[mqtt.tls]`
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TlsConfig {
    /// PEM file with the certificate authorities to trust. Default: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for brokers that authenticate clients by certificate.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

/// `[mqtt.publisher]`: where the broker puts the publisher's identity, when it does.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PublisherProperties {
    /// User property carrying the publisher's client id (fills `{client_id}` and the
    /// `mqtt.publisher.client.id` header). Unset: unknown.
    pub client_id_property: Option<String>,
    /// User property carrying the publisher's username. Unset: unknown.
    pub username_property: Option<String>,
    /// User property carrying the publisher's host or address. Unset: unknown.
    pub host_property: Option<String>,
}

/// `[connections.NAME]`: an endpoint and its credentials, used by routes. The `type` key picks
/// the kind.
#[derive(Debug, Clone)]
pub enum ConnectionConfig {
    Kafka(KafkaConnectionConfig),
    File(FileConnectionConfig),
}

impl ConnectionConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectionConfig::Kafka(_) => "kafka",
            ConnectionConfig::File(_) => "file",
        }
    }
}

/// `type = "kafka"`
#[derive(Debug, Clone, Deserialize)]
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

/// `type = "file"`: JSON lines, one object per message.
#[derive(Debug, Clone, Deserialize)]
pub struct FileConnectionConfig {
    /// File to append to; "-" writes to standard output.
    pub path: PathBuf,
    /// fsync after every batch, so that an acknowledged message survives a power cut.
    /// Default false (the data is flushed to the operating system only).
    #[serde(default)]
    pub fsync: bool,
}

/// `[[routes]]`: a set of topic filters, consumed by a shared-subscription group and delivered
/// to one connection.
#[derive(Debug, Clone, Deserialize)]
pub struct RouteConfig {
    /// Unique route name, used in client ids, metrics and logs. Letters, digits, `-` and `_`.
    pub name: String,
    /// MQTT topic filters (`+` and `#` wildcards) to consume.
    pub filters: Vec<String>,
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
    /// Kafka topic: a literal or a template such as "traffic-{topic.2}". Required for Kafka.
    pub topic: Option<String>,
    /// Kafka record key template. Default "{topic}", which keeps each MQTT topic's order
    /// within one partition.
    pub key: Option<String>,
    /// Most messages handed to the sink at once. Default 500.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// How long a batch may wait to fill up. Default "0s": send what has arrived at once.
    #[serde(default, with = "humantime_serde")]
    pub max_wait: Duration,
    /// Start this route. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl RouteConfig {
    pub fn share_group(&self) -> &str {
        self.share_group.as_deref().unwrap_or(&self.name)
    }
}

/// `[dead_letter]`: where messages go that a sink refused for good (an oversized record, a
/// template that made an invalid topic name). Each is written as a JSON object carrying the
/// route, the error and the original message, and only then acknowledged.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DeadLetterConfig {
    /// JSON-lines file to append to. Default "dead-letter.jsonl" beside the config file.
    pub path: Option<PathBuf>,
    /// Publish to this MQTT topic (QoS 1, on the `[mqtt]` broker) instead of a file.
    pub topic: Option<String>,
}

/// The dead-letter file when `[dead_letter]` names neither a path nor a topic.
pub const DEFAULT_DEAD_LETTER_PATH: &str = "dead-letter.jsonl";

/// `[admin]`: the operator's HTTP listener (`/metrics`, `/health`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AdminConfig {
    /// Address to listen on, e.g. "127.0.0.1:9464". Unset: no listener.
    pub listen: Option<String>,
}

/// A string that never shows in logs, errors or `Debug` output.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_client_id_prefix() -> String {
    "mqbridge".into()
}
fn default_session_expiry() -> Duration {
    Duration::from_secs(3600)
}
fn default_receive_maximum() -> u16 {
    256
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}
fn default_max_packet_size() -> u32 {
    1024 * 1024
}
fn default_delivery_timeout() -> Duration {
    Duration::from_secs(30)
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
fn default_true() -> bool {
    true
}
