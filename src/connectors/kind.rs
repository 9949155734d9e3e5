//! A connector, written once per kind (`Connector`): what it offers (a sink always; a source
//! where the system can be read), and the type-erased values the rest of the bridge holds: a
//! kind's connection settings (`ConnectionConfig`), a route's settings for that kind
//! (`RouteSinkConfig`) and the running client (`AnyConnection`, which `live.rs` holds as a
//! `Connection`). Only this file and the registry know that there are several kinds; nothing
//! else matches on one.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;

use crate::flow::{BoxError, Sink};
use crate::settings::{struct_fields, Check, SectionReader, Value};
use crate::sources::{ReadSpec, Reader};

/// A reader being opened (`Connector::open_reader`).
pub type OpenReader = BoxFuture<'static, Result<Box<dyn Reader>, BoxError>>;

/// Everything a connection kind defines: its settings, how it checks them and how it builds
/// its client, a route's sink and, where the system can be read, a reader (`READABLE`,
/// `open_reader`, `check_reader`). Register it with one line in `registry.rs`.
pub trait Connector: 'static {
    /// The `type = "..."` of its connections.
    const NAME: &'static str;
    /// Whether it offers a source (a consumer group member, `open_reader`) beside its sink.
    const READABLE: bool = false;
    /// Whether its routes keep per-topic order unless they say otherwise.
    const ORDERED_BY_DEFAULT: bool;
    /// `[connections.NAME]`, without `type`.
    type ConnectionConfig: DeserializeOwned + fmt::Debug + PartialEq + Send + Sync + 'static;
    /// The keys a route takes for this kind, beside the keys every route takes: a plain struct
    /// deriving `Deserialize`, whose field names are read as the kind's route keys (so no
    /// `flatten` and no hand-written `Deserialize`).
    type RouteConfig: DeserializeOwned + fmt::Debug + PartialEq + Send + Sync + 'static;
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
    fn check_connection(config: &Self::ConnectionConfig, check: &mut Check<'_>);
    fn check_route(config: &Self::RouteConfig, check: &mut Check<'_>);
    fn connect(
        name: &str,
        config: &Self::ConnectionConfig,
    ) -> impl Future<Output = Result<Self::Connection, BoxError>> + Send;
    /// The sink of the route `context` names.
    fn route_sink(
        connection: &Self::Connection,
        context: &RouteContext<'_>,
        route: &Self::RouteConfig,
    ) -> Result<Arc<dyn Sink>, BoxError>;
    /// The connection check: reachable and authenticated. `Ok` carries a detail for the log.
    fn health_check(
        connection: &Self::Connection,
    ) -> impl Future<Output = Result<String, BoxError>> + Send;
    /// A route's own check for `mqbridge check`, where the kind can make one without side
    /// effects (Kafka: the metadata of a literal topic). `None`: nothing to check.
    fn probe_route(
        _connection: &Self::Connection,
        _route: &Self::RouteConfig,
    ) -> impl Future<Output = Option<Result<String, BoxError>>> + Send {
        async { None }
    }
    /// A downlink's source topic, for `mqbridge check`, where the kind can be read from
    /// (Kafka: the topic's metadata; RocketMQ: its queues). `None`: not a source.
    fn probe_topic(
        _connection: &Self::Connection,
        _topic: &str,
    ) -> impl Future<Output = Option<Result<String, BoxError>>> + Send {
        async { None }
    }
    /// A consumer-group member reading `spec`, where the kind can be read from (Kafka,
    /// RocketMQ). `None`: the kind offers no source.
    fn open_reader(_config: &Self::ConnectionConfig, _spec: ReadSpec) -> Option<OpenReader> {
        None
    }
    /// Checks what a reader of `spec` reads (topic, tag filter, group) where the kind can be
    /// read from; `uses_tag`: the flow's templates use the message's `{tag}`.
    fn check_reader(_spec: &ReadSpec, _uses_tag: bool, _check: &mut Check<'_>) {}
    /// Waits for what the client still queues to be delivered, up to `timeout`.
    fn flush(
        _connection: &Self::Connection,
        _timeout: Duration,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// What a kind's sink may need of the route beside the kind's own keys.
#[derive(Debug, Clone, Copy)]
pub struct RouteContext<'a> {
    pub name: &'a str,
    /// Whether the route keeps each MQTT topic's order.
    pub ordered: bool,
}

/// A kind as the config loader sees it.
pub trait Kind: Sync {
    fn name(&self) -> &'static str;
    /// What it offers: "sink", or "sink and source".
    fn offers(&self) -> &'static str;
    /// The keys a route takes for this kind.
    fn route_keys(&self) -> &'static [&'static str];
    fn read_connection<'a>(
        &self,
        reader: &mut SectionReader<'a, '_>,
        label: &str,
        value: Value<'a>,
        base: &Path,
    ) -> Option<ConnectionConfig>;
    fn read_route<'a>(
        &self,
        reader: &mut SectionReader<'a, '_>,
        label: &str,
        value: Value<'a>,
    ) -> Option<RouteSinkConfig>;
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

    fn route_keys(&self) -> &'static [&'static str] {
        struct_fields::<K::RouteConfig>()
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

    fn read_route<'a>(
        &self,
        reader: &mut SectionReader<'a, '_>,
        label: &str,
        value: Value<'a>,
    ) -> Option<RouteSinkConfig> {
        let config = reader.read::<K::RouteConfig>(label, value)?;
        Some(RouteSinkConfig(Arc::new(Typed::<K, _>::new(config))))
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

/// A running client of any kind, as `Connection` (`live.rs`) holds it.
pub(super) trait AnyConnection: Send + Sync {
    fn route_sink(
        &self,
        context: &RouteContext<'_>,
        route: &RouteSinkConfig,
    ) -> Result<Arc<dyn Sink>, BoxError>;
    fn health_check(&self) -> BoxFuture<'_, Result<String, BoxError>>;
    fn probe_route<'a>(
        &'a self,
        route: &'a RouteSinkConfig,
    ) -> BoxFuture<'a, Option<Result<String, BoxError>>>;
    fn probe_topic<'a>(&'a self, topic: &'a str)
        -> BoxFuture<'a, Option<Result<String, BoxError>>>;
    fn flush(&self, timeout: Duration) -> BoxFuture<'_, ()>;
}

/// A connection's settings, of whichever kind.
#[derive(Clone)]
pub struct ConnectionConfig(Arc<dyn AnyConnectionConfig>);

trait AnyConnectionConfig: fmt::Debug + Send + Sync {
    fn kind(&self) -> &'static str;
    fn settings(&self) -> &dyn Any;
    fn files(&self) -> Vec<PathBuf>;
    fn files_read(&self) -> Vec<PathBuf>;
    fn same(&self, other: &dyn Any) -> bool;
    fn check(&self, check: &mut Check<'_>);
    fn connect<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Arc<dyn AnyConnection>, BoxError>>;
    fn readable(&self) -> bool;
    fn open_reader(&self, spec: ReadSpec) -> Option<OpenReader>;
    fn check_reader(&self, spec: &ReadSpec, uses_tag: bool, check: &mut Check<'_>);
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
    fn same(&self, other: &dyn Any) -> bool {
        other.downcast_ref::<K::ConnectionConfig>() == Some(&self.0)
    }
    fn check(&self, check: &mut Check<'_>) {
        K::check_connection(&self.0, check)
    }
    fn connect<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Arc<dyn AnyConnection>, BoxError>> {
        Box::pin(async move {
            let live = K::connect(name, &self.0).await?;
            Ok(Arc::new(Typed::<K, _>::new(live)) as Arc<dyn AnyConnection>)
        })
    }
    fn readable(&self) -> bool {
        K::READABLE
    }
    fn open_reader(&self, spec: ReadSpec) -> Option<OpenReader> {
        K::open_reader(&self.0, spec)
    }
    fn check_reader(&self, spec: &ReadSpec, uses_tag: bool, check: &mut Check<'_>) {
        K::check_reader(spec, uses_tag, check)
    }
}

impl ConnectionConfig {
    /// The kind's name, as written in `type`.
    pub fn kind(&self) -> &'static str {
        self.0.kind()
    }
    pub fn check(&self, check: &mut Check<'_>) {
        self.0.check(check)
    }
    /// The kind's own settings type, when `T` is it.
    pub fn settings<T: 'static>(&self) -> Option<&T> {
        self.0.settings().downcast_ref()
    }
    /// Local files the connection writes.
    pub fn files(&self) -> Vec<PathBuf> {
        self.0.files()
    }
    /// Local files the connection reads secrets or certificates from.
    pub fn files_read(&self) -> Vec<PathBuf> {
        self.0.files_read()
    }
    /// The running client, of this connection's kind (`live.rs` holds it as a `Connection`).
    pub(super) async fn connect_any(&self, name: &str) -> Result<Arc<dyn AnyConnection>, BoxError> {
        self.0.connect(name).await
    }
    /// Opens a consumer-group member reading `spec`; `None` when the kind cannot be read.
    pub fn open_reader(&self, spec: ReadSpec) -> Option<OpenReader> {
        self.0.open_reader(spec)
    }
    /// Checks what a reader of `spec` would read (`Connector::check_reader`).
    pub fn check_reader(&self, spec: &ReadSpec, uses_tag: bool, check: &mut Check<'_>) {
        self.0.check_reader(spec, uses_tag, check)
    }
    /// Whether the kind can be read from (a route's or downlink's source).
    pub fn readable(&self) -> bool {
        self.0.readable()
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

/// A route's settings for its connection's kind.
#[derive(Clone)]
pub struct RouteSinkConfig(Arc<dyn AnyRouteConfig>);

trait AnyRouteConfig: fmt::Debug + Send + Sync {
    fn kind(&self) -> &'static str;
    fn ordered_by_default(&self) -> bool;
    fn check(&self, check: &mut Check<'_>);
    fn settings(&self) -> &dyn Any;
    fn same(&self, other: &dyn Any) -> bool;
}

impl<K: Connector> AnyRouteConfig for Typed<K, K::RouteConfig> {
    fn kind(&self) -> &'static str {
        K::NAME
    }
    fn ordered_by_default(&self) -> bool {
        K::ORDERED_BY_DEFAULT
    }
    fn check(&self, check: &mut Check<'_>) {
        K::check_route(&self.0, check)
    }
    fn settings(&self) -> &dyn Any {
        &self.0
    }
    fn same(&self, other: &dyn Any) -> bool {
        other.downcast_ref::<K::RouteConfig>() == Some(&self.0)
    }
}

impl PartialEq for RouteSinkConfig {
    fn eq(&self, other: &Self) -> bool {
        self.0.same(other.0.settings())
    }
}

impl RouteSinkConfig {
    pub fn kind(&self) -> &'static str {
        self.0.kind()
    }
    pub fn ordered_by_default(&self) -> bool {
        self.0.ordered_by_default()
    }
    pub fn check(&self, check: &mut Check<'_>) {
        self.0.check(check)
    }
    /// The kind's own route settings type, when `T` is it.
    pub fn settings<T: 'static>(&self) -> Option<&T> {
        self.0.settings().downcast_ref()
    }
}

impl fmt::Debug for RouteSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
