//! The configuration file's shape. Every `///` comment on a field is user documentation: the
//! README's config reference and `mqbridge example-config` repeat it.
//!
//! Unknown keys are not rejected by serde here: the loader (`reader.rs`) collects them with
//! `serde_ignored` so that a typo is reported together with every other problem in the file.
//! A connection's settings, and a route's source and sink settings, are defined beside each
//! kind (`connectors/<kind>/config.rs`) and held here type-erased; `[mqtt]` is the default
//! broker's connection, of the `mqtt` kind.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub use super::route::{DeadLetterSink, RouteConfig, RouteKeys, Spelling, DEFAULT_BROKER};
pub use crate::connectors::mqtt::MqttConfig;
pub use crate::connectors::{ConnectionConfig, SinkSettings, SourceSettings};
use crate::settings::Secret;

/// The whole file, after loading and validation.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[mqtt]`, the default broker, when the file has one; it is also the connection
    /// `DEFAULT_BROKER` of `connections`.
    pub mqtt: Option<MqttConfig>,
    pub connections: BTreeMap<String, ConnectionConfig>,
    /// `[[routes]]` and `[[downlinks]]`, in the file's order (each spelling's own).
    pub routes: Vec<RouteConfig>,
    pub dead_letter: DeadLetterConfig,
    pub admin: AdminConfig,
    /// How long a graceful shutdown may take to flush and acknowledge in-flight messages.
    pub shutdown_timeout: Duration,
    /// Where the bridge keeps its state: the routes' disk buffers (`buffers/ROUTE.redb`).
    pub data_dir: PathBuf,
    /// The most payload bytes all flows together hold received and not yet acknowledged.
    pub memory_budget: usize,
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
    /// Where the bridge keeps its state: the disk buffers of routes that have one, one file
    /// each (`buffers/ROUTE.redb`). Default: the service's state directory under systemd
    /// (`$STATE_DIRECTORY`, /var/lib/mqbridge with the shipped unit), else "data" beside the
    /// config file.
    pub data_dir: Option<PathBuf>,
    /// The most payload bytes all routes together hold received and not yet acknowledged (MQTT
    /// consumer windows, Kafka and RocketMQ members' windows), e.g. "48MiB" (sizes as
    /// `buffer.max_size`). Each reader keeps 64 KiB of it for itself, so that a stalled route
    /// cannot starve the others; past that, readers share the rest and stop reading when it is
    /// spent (nothing is dropped). Default "48MiB", which fits a 64 MiB unit.
    pub memory_budget: Option<crate::buffer::ByteSize>,
}

impl Config {
    /// Settings that are valid but that an operator should know the cost of.
    pub fn warnings(&self) -> Vec<String> {
        let labelled = self.connections.iter().flat_map(|(name, c)| {
            let label = connection_label(name);
            c.warnings()
                .into_iter()
                .map(move |w| format!("{label} {w}"))
        });
        labelled.collect()
    }

    /// The routes the file spelled `spelling`.
    pub fn spelled(&self, spelling: Spelling) -> impl Iterator<Item = &RouteConfig> {
        self.routes.iter().filter(move |r| r.spelling == spelling)
    }

    /// The connections the file defines in `[connections]` (not the default broker).
    pub fn defined_connections(&self) -> usize {
        let default = self.mqtt.is_some() as usize;
        self.connections.len() - default
    }

    /// The most payload bytes a Kafka or RocketMQ group member holds handed over and not
    /// acknowledged: the default broker's `max_inflight_bytes`, as every source's window.
    pub fn window_bytes(&self) -> usize {
        let bytes = self.mqtt.as_ref().map(|m| m.max_inflight_bytes);
        bytes.unwrap_or(8 * 1024 * 1024) as usize
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
    /// `connection = "NAME"` and that kind's route keys: every route's dead letters go to
    /// that connection's sink (unless a route names its own `dead_letter`).
    #[serde(skip)]
    pub sink: Option<DeadLetterSink>,
}

/// How problems and logs name a connection: `[mqtt]` for the default broker, else
/// `connection "NAME"`.
pub fn connection_label(name: &str) -> String {
    match name == DEFAULT_BROKER {
        true => "[mqtt]".to_owned(),
        false => format!("connection \"{name}\""),
    }
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
