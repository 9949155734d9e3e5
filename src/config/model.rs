//! The configuration file's shape. Every `///` comment on a field is user documentation: the
//! README's config reference and `mqbridge example-config` repeat it.
//!
//! Unknown keys are not rejected by serde here: the loader (`reader.rs`) collects them with
//! `serde_ignored` so that a typo is reported together with every other problem in the file.
//! A connection's settings, and the keys a route takes for its connection's kind, are defined
//! beside each kind (`connectors/<kind>/config.rs`) and held here type-erased.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub use super::route::{RouteConfig, RouteSource};
pub use crate::connectors::{ConnectionConfig, RouteSinkConfig};
use crate::settings::Secret;

/// The whole file, after loading and validation.
#[derive(Debug, Clone)]
pub struct Config {
    pub mqtt: MqttConfig,
    pub connections: BTreeMap<String, ConnectionConfig>,
    pub routes: Vec<RouteConfig>,
    /// `[[downlinks]]`: Kafka and RocketMQ topics published to the MQTT broker.
    pub downlinks: Vec<crate::downlinks::DownlinkConfig>,
    pub dead_letter: DeadLetterConfig,
    pub admin: AdminConfig,
    /// How long a graceful shutdown may take to flush and acknowledge in-flight messages.
    pub shutdown_timeout: Duration,
    /// The file it was read from, which a reload reads again.
    pub source: Option<PathBuf>,
}

/// Top-level keys that are not tables.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TopLevel {
    /// How long a graceful shutdown may spend delivering and acknowledging in-flight messages
    /// before it disconnects anyway (the broker then redelivers them). Default "30s".
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

/// `[mqtt]`: the broker the bridge consumes from.
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

impl Config {
    /// Settings that are valid but that an operator should know the cost of.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.mqtt.max_packet_size < PROTOCOL_MAX_PACKET_SIZE {
            out.push(format!(
                "[mqtt] max_packet_size = {}: the broker drops a larger message for the bridge \
                 without a trace (no error, no dead letter); leave it unset to take every message \
                 the protocol allows",
                self.mqtt.max_packet_size
            ));
        }
        out
    }
}

/// `[dead_letter]`: where messages go that a sink refused for good (an oversized record, a
/// template that made an invalid topic name). Each is written as a JSON object carrying the
/// route, the error and the original message, and only then acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DeadLetterConfig {
    /// JSON-lines file to append to. Default "dead-letter.jsonl" beside the config file.
    pub path: Option<PathBuf>,
    /// Publish to this MQTT topic (QoS 1, on the `[mqtt]` broker) instead of a file.
    pub topic: Option<String>,
}

/// The dead-letter file when `[dead_letter]` names neither a path nor a topic.
pub const DEFAULT_DEAD_LETTER_PATH: &str = "dead-letter.jsonl";

/// `[admin]`: the operator's HTTP listener: metrics, health and readiness, the routes' states
/// and their pause and resume, reload, and the status page.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AdminConfig {
    /// Address to listen on, e.g. "127.0.0.1:9464". Unset: no listener.
    #[serde(default, deserialize_with = "socket_address")]
    pub listen: Option<SocketAddr>,
    /// A bearer token the requests that change something (pause, resume, reload) must carry.
    /// Required when `listen` is not a loopback address. Never logged.
    pub token: Option<Secret>,
    /// Read the token from this file instead (trailing newline ignored).
    pub token_file: Option<PathBuf>,
    /// Host names the listener answers to beside IP addresses and `localhost`, e.g.
    /// `["bridge.plant.internal"]`: a request naming any other host is refused, so that a web
    /// page cannot reach the API through a domain of its own pointed at this host (DNS
    /// rebinding). Default: none.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// How long a route's destination may fail every send before `/readyz` says the bridge
    /// is not ready. Default "30s".
    #[serde(default = "default_failing_after", with = "humantime_serde")]
    pub failing_after: Duration,
    /// How often each connection is checked while running (`mqbridge_connection_healthy`,
    /// `/readyz`). Default "30s".
    #[serde(default = "default_check_interval", with = "humantime_serde")]
    pub check_interval: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: None,
            token: None,
            token_file: None,
            allowed_hosts: Vec::new(),
            failing_after: default_failing_after(),
            check_interval: default_check_interval(),
        }
    }
}

fn default_failing_after() -> Duration {
    Duration::from_secs(30)
}
fn default_check_interval() -> Duration {
    Duration::from_secs(30)
}

fn socket_address<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "\"{text}\" is not an address such as \"127.0.0.1:9464\""
        ))
    })
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
pub(super) fn default_true() -> bool {
    true
}
