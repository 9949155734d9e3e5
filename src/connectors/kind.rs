//! What a connection kind implements (`Connector`): its connection settings, and for each
//! direction it offers the settings a route gives it as a typed value: a sink (every kind) and a
//! source (the kinds that can be read), each checked and built by the kind. The registry
//! (`registry.rs`) names the kinds; `bound.rs` holds their values type-erased, bound to their
//! kind when the file is read; `live.rs` runs them.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::flow::{BoxError, Sink};
use crate::pipeline::{Source, SourceContext};
use crate::settings::Check;
use crate::template::Vocabulary;

/// Everything a connection kind defines: its settings, how it checks them and builds its
/// client, the sink a route delivers to and, where the system can be read, the source a route
/// reads (`READABLE`, `SourceConfig`, `source`). Register it with one line in `registry.rs`.
pub trait Connector: 'static {
    /// The `type = "..."` of its connections.
    const NAME: &'static str;
    /// Whether its routes keep per-key order unless they say otherwise.
    const ORDERED_BY_DEFAULT: bool;
    /// Batches of one order key that may be out at once, when ordered: 1, or more for a sink
    /// that delivers a key's batches in the order their sends were first polled (MQTT: one
    /// connection per key, publishing pipelined), so that the next batch goes out while the
    /// last is acknowledged.
    const ORDER_WINDOW: usize = 1;
    /// Whether the devices are on its side (MQTT): it names a flow's direction in the metrics.
    const FACES_DEVICES: bool = false;
    /// Whether it offers a source beside its sink.
    const READABLE: bool = false;
    /// What its messages carry, for the templates of the routes that read it.
    const VOCABULARY: Vocabulary = Vocabulary::Record;
    /// `[connections.NAME]`, without `type`.
    type ConnectionConfig: DeserializeOwned + fmt::Debug + Clone + PartialEq + Send + Sync + 'static;
    /// The keys a route takes for this kind as its sink, beside the keys every route takes: a
    /// plain struct deriving `Deserialize`, whose field names are the kind's sink keys (so no
    /// `flatten` and no hand-written `Deserialize`). Serialized, it is what the status shows.
    type SinkConfig: DeserializeOwned + Serialize + fmt::Debug + PartialEq + Send + Sync + 'static;
    /// The keys of a route's `source` for this kind (`NoSource` where it cannot be read).
    type SourceConfig: DeserializeOwned + Serialize + fmt::Debug + PartialEq + Send + Sync + 'static;
    /// The running client, shared by the routes of one connection.
    type Connection: Send + Sync + 'static;

    /// Makes relative paths in the settings relative to the config file's folder.
    fn resolve_paths(_config: &mut Self::ConnectionConfig, _base: &Path) {}
    /// Local files the connection writes, which nothing else may write (after
    /// `resolve_paths`).
    fn files(_config: &Self::ConnectionConfig) -> Vec<PathBuf> {
        Vec::new()
    }
    /// Local files the connection reads its secrets and certificates from (after
    /// `resolve_paths`): a reload that finds one changed restarts the connection.
    fn files_read(_config: &Self::ConnectionConfig) -> Vec<PathBuf> {
        Vec::new()
    }
    /// Settings that are valid but whose cost an operator should know, one sentence each.
    fn warnings(_config: &Self::ConnectionConfig) -> Vec<String> {
        Vec::new()
    }
    /// Every message of `topic` once, each with where it sat (`kafka:TOPIC/PARTITION@OFFSET`),
    /// without joining a group: how `mqbridge replay` reads dead letters a route's sink of this
    /// kind wrote. Blocks. `None`: the kind cannot be read so.
    fn read_topic(
        _config: &Self::ConnectionConfig,
        _topic: &str,
    ) -> Option<Result<Vec<(String, crate::message::Message)>, BoxError>> {
        None
    }
    fn check_connection(config: &Self::ConnectionConfig, check: &mut Check<'_>);
    /// Checks a route's sink keys; `vocabulary` is what the route's messages carry.
    fn check_sink(config: &Self::SinkConfig, vocabulary: Vocabulary, check: &mut Check<'_>);
    /// Whether the sink's templates use the message's `{tag}` (a source without tags refuses
    /// such a route).
    fn sink_uses_tag(_config: &Self::SinkConfig) -> bool {
        false
    }
    /// Fills in the source keys left to their defaults that depend on the route (its group).
    fn complete_source(_config: &mut Self::SourceConfig, _route: &str) {}
    /// Checks a route's source keys; `uses_tag`: the route's sink uses the message's `{tag}`.
    fn check_source(_config: &Self::SourceConfig, _uses_tag: bool, _check: &mut Check<'_>) {}
    /// What a source joins that no two routes of one connection may share (a consumer group,
    /// which would split the topic's partitions between them); `None`: nothing.
    fn membership(_config: &Self::SourceConfig) -> Option<String> {
        None
    }
    fn connect(
        name: &str,
        config: &Self::ConnectionConfig,
    ) -> impl Future<Output = Result<Self::Connection, BoxError>> + Send;
    /// The sink of the route `context` names.
    fn sink(
        connection: &Self::Connection,
        context: &SinkContext<'_>,
        config: &Self::SinkConfig,
    ) -> Result<Arc<dyn Sink>, BoxError>;
    /// The source of the route `context` names, where the kind can be read.
    fn source(
        _connection: &Self::Connection,
        _settings: &Self::ConnectionConfig,
        _context: &SourceContext,
        _config: &Self::SourceConfig,
    ) -> Result<Box<dyn Source>, BoxError> {
        Err(format!("a {} connection cannot be read", Self::NAME).into())
    }
    /// The connection check: reachable and authenticated. `Ok` carries a detail for the log.
    fn health_check(
        connection: &Self::Connection,
    ) -> impl Future<Output = Result<String, BoxError>> + Send;
    /// A route's sink check for `mqbridge check`, where the kind can make one without side
    /// effects (Kafka: the metadata of a literal topic). `None`: nothing to check.
    fn probe_sink(
        _connection: &Self::Connection,
        _config: &Self::SinkConfig,
    ) -> impl Future<Output = Option<Result<String, BoxError>>> + Send {
        async { None }
    }
    /// A route's source checks for `mqbridge check`: what each checks (`filter "a/#"`,
    /// `source`) and its verdict.
    fn probe_source(
        _connection: &Self::Connection,
        _config: &Self::SourceConfig,
    ) -> impl Future<Output = Vec<(String, Result<String, BoxError>)>> + Send {
        async { Vec::new() }
    }
    /// Waits for what the client still queues to be delivered, up to `timeout`.
    fn flush(
        _connection: &Self::Connection,
        _timeout: Duration,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// The source settings of a kind that cannot be read: no value of it exists.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, Serialize)]
pub enum NoSource {}

/// What a kind's sink may need of the route beside the kind's own keys.
#[derive(Debug, Clone, Copy)]
pub struct SinkContext<'a> {
    pub name: &'a str,
    /// The route's clients of the sink's system are named from this (after the connection's
    /// own prefix): the route's name, or `downlink-{name}` for a `[[downlinks]]` entry.
    pub client: &'a str,
    /// Whether the route keeps each key's order.
    pub ordered: bool,
    /// The most messages the route has in delivery at once (`concurrency` × `batch_size`).
    pub in_flight: usize,
    /// What the route's messages carry (its source's kind).
    pub vocabulary: Vocabulary,
}

/// Where a route's source keys stand and what they read.
#[derive(Debug, Clone, Copy)]
pub struct SourceAt<'a> {
    /// The connection they read.
    pub connection: &'a str,
    /// The route's name, for the defaults that depend on it.
    pub route: &'a str,
    /// In the route's `source` table, rather than among the route's own keys.
    pub nested: bool,
}
