//! A connector, written once per kind (`Connector`): its connection settings, and for each
//! direction it offers the settings a route gives it as a typed value: a sink (every kind) and a
//! source (the kinds that can be read). The rest of the bridge holds these values type-erased
//! (`ConnectionConfig`, `SinkSettings`, `SourceSettings`), bound to their kind when the file is
//! read, so that nothing downcasts them at run time; `live.rs` holds the running client. Only
//! this file and the registry know that there are several kinds; nothing else matches on one.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::flow::{BoxError, Sink};
use crate::pipeline::{Source, SourceContext};
use crate::settings::{struct_fields, Check, SectionReader, Value};
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
    /// that delivers a key's batches in the order they were sent (MQTT: one connection per key,
    /// publishing pipelined), so that the next batch goes out while the last is acknowledged.
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

/// A kind as the config loader sees it.
pub trait Kind: Sync {
    fn name(&self) -> &'static str;
    /// What it offers: "sink", or "sink and source".
    fn offers(&self) -> &'static str;
    fn readable(&self) -> bool;
    /// Whether the devices are on its side (`Connector::FACES_DEVICES`).
    fn faces_devices(&self) -> bool;
    /// The keys a route takes for this kind as its sink.
    fn sink_keys(&self) -> &'static [&'static str];
    /// The keys of a route's `source` on this kind (none where it cannot be read).
    fn source_keys(&self) -> &'static [&'static str];
    fn read_connection<'a>(
        &self,
        reader: &mut SectionReader<'a, '_>,
        label: &str,
        value: Value<'a>,
        base: &Path,
    ) -> Option<ConnectionConfig>;
    fn read_sink<'a>(
        &self,
        reader: &mut SectionReader<'a, '_>,
        label: &str,
        value: Value<'a>,
    ) -> Option<SinkSettings>;
    /// A route's source on `connection`, its defaults completed for route `route`. `nested`:
    /// `value` is the route's `source` table (its problems are located under `source.`), else
    /// keys of the route itself.
    fn read_source<'a>(
        &self,
        reader: &mut SectionReader<'a, '_>,
        label: &str,
        value: Value<'a>,
        source: SourceAt<'_>,
    ) -> Option<SourceSettings>;
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

/// A route's `source` table, read on its own but located within the route.
#[derive(serde::Deserialize)]
#[serde(bound = "T: DeserializeOwned")]
struct Nested<T> {
    source: T,
}

/// The registry's entry for kind `K`.
pub struct Registered<K>(PhantomData<fn() -> K>);

impl<K> Registered<K> {
    pub const fn new() -> Self {
        Registered(PhantomData)
    }
}

impl<K: Connector> Kind for Registered<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn offers(&self) -> &'static str {
        match K::READABLE {
            true => "sink and source",
            false => "sink",
        }
    }

    fn readable(&self) -> bool {
        K::READABLE
    }

    fn faces_devices(&self) -> bool {
        K::FACES_DEVICES
    }

    fn sink_keys(&self) -> &'static [&'static str] {
        struct_fields::<K::SinkConfig>()
    }

    fn source_keys(&self) -> &'static [&'static str] {
        match K::READABLE {
            true => struct_fields::<K::SourceConfig>(),
            false => &[],
        }
    }

    fn read_connection<'a>(
        &self,
        reader: &mut SectionReader<'a, '_>,
        label: &str,
        value: Value<'a>,
        base: &Path,
    ) -> Option<ConnectionConfig> {
        let mut config = reader.read::<K::ConnectionConfig>(label, value)?;
        K::resolve_paths(&mut config, base);
        Some(ConnectionConfig(Arc::new(Typed::<K, _>::new(config))))
    }

    fn read_sink<'a>(
        &self,
        reader: &mut SectionReader<'a, '_>,
        label: &str,
        value: Value<'a>,
    ) -> Option<SinkSettings> {
        let config = reader.read::<K::SinkConfig>(label, value)?;
        Some(SinkSettings(Arc::new(Typed::<K, _>::new(config))))
    }

    fn read_source<'a>(
        &self,
        reader: &mut SectionReader<'a, '_>,
        label: &str,
        value: Value<'a>,
        at: SourceAt<'_>,
    ) -> Option<SourceSettings> {
        let mut config = match at.nested {
            false => reader.read::<K::SourceConfig>(label, value)?,
            true => {
                let span = value.span();
                let mut table = toml::de::DeTable::new();
                table.insert(toml::Spanned::new(span.clone(), "source".into()), value);
                let wrapped = toml::Spanned::new(span, toml::de::DeValue::Table(table));
                reader
                    .read::<Nested<K::SourceConfig>>(label, wrapped)?
                    .source
            }
        };
        K::complete_source(&mut config, at.route);
        Some(SourceSettings {
            connection: at.connection.to_owned(),
            settings: Arc::new(Typed::<K, K::SourceConfig>::new(config)),
        })
    }
}

/// A kind's value, tagged with its kind.
pub(super) struct Typed<K, T>(pub(super) T, PhantomData<fn() -> K>);

impl<K, T> Typed<K, T> {
    pub(super) fn new(value: T) -> Self {
        Typed(value, PhantomData)
    }
}

impl<K, T: fmt::Debug> fmt::Debug for Typed<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A connection's settings, of whichever kind.
#[derive(Clone)]
pub struct ConnectionConfig(pub(super) Arc<dyn AnyConnectionConfig>);

pub(super) trait AnyConnectionConfig: fmt::Debug + Send + Sync {
    fn kind(&self) -> &'static str;
    fn settings(&self) -> &dyn Any;
    fn files(&self) -> Vec<PathBuf>;
    fn files_read(&self) -> Vec<PathBuf>;
    fn warnings(&self) -> Vec<String>;
    fn same(&self, other: &dyn Any) -> bool;
    fn check(&self, check: &mut Check<'_>);
    fn readable(&self) -> bool;
    fn faces_devices(&self) -> bool;
    fn vocabulary(&self) -> Vocabulary;
    fn connect<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Arc<dyn super::live::AnyConnection>, BoxError>>;
}

impl<K: Connector> AnyConnectionConfig for Typed<K, K::ConnectionConfig> {
    fn kind(&self) -> &'static str {
        K::NAME
    }
    fn settings(&self) -> &dyn Any {
        &self.0
    }
    fn files(&self) -> Vec<PathBuf> {
        K::files(&self.0)
    }
    fn files_read(&self) -> Vec<PathBuf> {
        K::files_read(&self.0)
    }
    fn warnings(&self) -> Vec<String> {
        K::warnings(&self.0)
    }
    fn same(&self, other: &dyn Any) -> bool {
        other.downcast_ref::<K::ConnectionConfig>() == Some(&self.0)
    }
    fn check(&self, check: &mut Check<'_>) {
        K::check_connection(&self.0, check)
    }
    fn readable(&self) -> bool {
        K::READABLE
    }
    fn faces_devices(&self) -> bool {
        K::FACES_DEVICES
    }
    fn vocabulary(&self) -> Vocabulary {
        K::VOCABULARY
    }
    fn connect<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Arc<dyn super::live::AnyConnection>, BoxError>> {
        Box::pin(async move {
            let client = K::connect(name, &self.0).await?;
            let live = super::live::Live::<K> {
                client,
                settings: self.0.clone(),
            };
            Ok(Arc::new(live) as Arc<dyn super::live::AnyConnection>)
        })
    }
}

impl ConnectionConfig {
    /// `config` as a connection of kind `K` (the loader reads `[mqtt]` so).
    pub fn new<K: Connector>(config: K::ConnectionConfig) -> Self {
        ConnectionConfig(Arc::new(Typed::<K, _>::new(config)))
    }

    /// The kind's name, as written in `type`.
    pub fn kind(&self) -> &'static str {
        self.0.kind()
    }
    pub fn check(&self, check: &mut Check<'_>) {
        self.0.check(check)
    }
    /// Local files the connection writes.
    pub fn files(&self) -> Vec<PathBuf> {
        self.0.files()
    }
    /// Local files the connection reads secrets or certificates from.
    pub fn files_read(&self) -> Vec<PathBuf> {
        self.0.files_read()
    }
    /// What an operator should know of valid settings (`Connector::warnings`).
    pub fn warnings(&self) -> Vec<String> {
        self.0.warnings()
    }
    /// Whether the kind can be read from (a route's source).
    pub fn readable(&self) -> bool {
        self.0.readable()
    }
    /// Whether the devices are on its side (`Connector::FACES_DEVICES`).
    pub fn faces_devices(&self) -> bool {
        self.0.faces_devices()
    }
    /// What the messages read from it carry.
    pub fn vocabulary(&self) -> Vocabulary {
        self.0.vocabulary()
    }

    /// The kind's own settings type, when `T` is it: for tests.
    #[cfg(test)]
    pub fn settings<T: 'static>(&self) -> Option<&T> {
        self.0.settings().downcast_ref()
    }
}

impl PartialEq for ConnectionConfig {
    fn eq(&self, other: &Self) -> bool {
        self.0.same(other.0.settings())
    }
}

impl fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.kind())?;
        self.0.fmt(f)
    }
}

/// A route's sink settings for its connection's kind.
#[derive(Clone)]
pub struct SinkSettings(pub(super) Arc<dyn AnySinkConfig>);

pub(super) trait AnySinkConfig: fmt::Debug + Send + Sync {
    fn kind(&self) -> &'static str;
    fn ordered_by_default(&self) -> bool;
    fn order_window(&self) -> usize;
    fn check(&self, vocabulary: Vocabulary, check: &mut Check<'_>);
    fn uses_tag(&self) -> bool;
    fn view(&self) -> serde_json::Value;
    fn settings(&self) -> &dyn Any;
    fn same(&self, other: &dyn Any) -> bool;
}

impl<K: Connector> AnySinkConfig for Typed<K, K::SinkConfig> {
    fn kind(&self) -> &'static str {
        K::NAME
    }
    fn ordered_by_default(&self) -> bool {
        K::ORDERED_BY_DEFAULT
    }
    fn order_window(&self) -> usize {
        K::ORDER_WINDOW
    }
    fn check(&self, vocabulary: Vocabulary, check: &mut Check<'_>) {
        K::check_sink(&self.0, vocabulary, check)
    }
    fn uses_tag(&self) -> bool {
        K::sink_uses_tag(&self.0)
    }
    fn view(&self) -> serde_json::Value {
        serde_json::to_value(&self.0).unwrap_or_default()
    }
    fn settings(&self) -> &dyn Any {
        &self.0
    }
    fn same(&self, other: &dyn Any) -> bool {
        other.downcast_ref::<K::SinkConfig>() == Some(&self.0)
    }
}

impl PartialEq for SinkSettings {
    fn eq(&self, other: &Self) -> bool {
        self.0.same(other.0.settings())
    }
}

impl SinkSettings {
    pub fn kind(&self) -> &'static str {
        self.0.kind()
    }
    pub fn ordered_by_default(&self) -> bool {
        self.0.ordered_by_default()
    }
    /// Batches of one key out at once on an ordered route (`Connector::ORDER_WINDOW`).
    pub fn order_window(&self) -> usize {
        self.0.order_window()
    }
    pub fn check(&self, vocabulary: Vocabulary, check: &mut Check<'_>) {
        self.0.check(vocabulary, check)
    }
    /// Whether its templates use the message's `{tag}`.
    pub fn uses_tag(&self) -> bool {
        self.0.uses_tag()
    }
    /// The settings as the status shows them.
    pub fn view(&self) -> serde_json::Value {
        self.0.view()
    }

    /// The kind's own settings type, when `T` is it: for tests.
    #[cfg(test)]
    pub fn settings<T: 'static>(&self) -> Option<&T> {
        self.0.settings().downcast_ref()
    }
}

impl fmt::Debug for SinkSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A route's source: the connection it reads and that kind's settings.
#[derive(Clone)]
pub struct SourceSettings {
    connection: String,
    pub(super) settings: Arc<dyn AnySourceConfig>,
}

pub(super) trait AnySourceConfig: fmt::Debug + Send + Sync {
    fn kind(&self) -> &'static str;
    fn check(&self, uses_tag: bool, check: &mut Check<'_>);
    fn membership(&self) -> Option<String>;
    fn view(&self) -> serde_json::Value;
    fn settings(&self) -> &dyn Any;
    fn same(&self, other: &dyn Any) -> bool;
}

impl<K: Connector> AnySourceConfig for Typed<K, K::SourceConfig> {
    fn kind(&self) -> &'static str {
        K::NAME
    }
    fn check(&self, uses_tag: bool, check: &mut Check<'_>) {
        K::check_source(&self.0, uses_tag, check)
    }
    fn membership(&self) -> Option<String> {
        K::membership(&self.0)
    }
    fn view(&self) -> serde_json::Value {
        serde_json::to_value(&self.0).unwrap_or_default()
    }
    fn settings(&self) -> &dyn Any {
        &self.0
    }
    fn same(&self, other: &dyn Any) -> bool {
        other.downcast_ref::<K::SourceConfig>() == Some(&self.0)
    }
}

impl SourceSettings {
    /// The connection it reads.
    pub fn connection(&self) -> &str {
        &self.connection
    }
    pub fn kind(&self) -> &'static str {
        self.settings.kind()
    }
    pub fn check(&self, uses_tag: bool, check: &mut Check<'_>) {
        self.settings.check(uses_tag, check)
    }
    /// What no two routes of its connection may share (`Connector::membership`).
    pub fn membership(&self) -> Option<String> {
        self.settings.membership()
    }

    /// The kind's own settings type, when `T` is it: for tests.
    #[cfg(test)]
    pub fn settings<T: 'static>(&self) -> Option<&T> {
        self.settings.settings().downcast_ref()
    }
    /// The settings as the status shows them: the kind, the connection and the kind's keys.
    pub fn view(&self) -> serde_json::Value {
        let mut view = serde_json::json!({"kind": self.kind(), "connection": self.connection});
        if let (Some(out), serde_json::Value::Object(keys)) =
            (view.as_object_mut(), self.settings.view())
        {
            out.extend(keys);
        }
        view
    }
}

impl PartialEq for SourceSettings {
    fn eq(&self, other: &Self) -> bool {
        self.connection == other.connection && self.settings.same(other.settings.settings())
    }
}

impl fmt::Debug for SourceSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.connection, self.settings)
    }
}
