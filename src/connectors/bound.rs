//! Each kind's values held type-erased, bound to their kind when the file is read: a
//! connection's settings (`ConnectionConfig`), a route's sink settings (`SinkSettings`) and its
//! source (`SourceSettings`), and the running client they meet (`Connection`, run by
//! `live.rs`). Only this file, `live.rs` and the registry know that there are several kinds.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::kind::{Connector, SinkContext};
use crate::flow::{BoxError, Sink};
use crate::pipeline::{Source, SourceContext};
use crate::settings::Check;
use crate::template::Vocabulary;

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
    fn read_topic(
        &self,
        topic: &str,
    ) -> Option<Result<Vec<(String, crate::message::Message)>, BoxError>>;
    fn same(&self, other: &dyn Any) -> bool;
    fn check(&self, check: &mut Check<'_>);
    fn readable(&self) -> bool;
    fn faces_devices(&self) -> bool;
    fn vocabulary(&self) -> Vocabulary;
    fn connect<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Arc<dyn AnyConnection>, BoxError>>;
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
    fn read_topic(
        &self,
        topic: &str,
    ) -> Option<Result<Vec<(String, crate::message::Message)>, BoxError>> {
        K::read_topic(&self.0, topic)
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
    ) -> BoxFuture<'a, Result<Arc<dyn AnyConnection>, BoxError>> {
        Box::pin(async move {
            let client = K::connect(name, &self.0).await?;
            let live = Live::<K> {
                client,
                settings: self.0.clone(),
            };
            Ok(Arc::new(live) as Arc<dyn AnyConnection>)
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
    /// Every message of `topic` once, with where it sat (`Connector::read_topic`).
    pub fn read_topic(
        &self,
        topic: &str,
    ) -> Option<Result<Vec<(String, crate::message::Message)>, BoxError>> {
        self.0.read_topic(topic)
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
    pub(super) connection: String,
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

/// A connection's running client, shared by the routes that name it, and its settings.
#[derive(Clone)]
pub struct Connection {
    pub(super) live: Arc<dyn AnyConnection>,
    pub(super) config: ConnectionConfig,
}

/// A kind's client with the settings it was built from.
pub(super) struct Live<K: Connector> {
    pub(super) client: K::Connection,
    pub(super) settings: K::ConnectionConfig,
}

/// A running client of any kind, as `Connection` holds it.
pub(super) trait AnyConnection: Send + Sync {
    fn sink(
        &self,
        context: &SinkContext<'_>,
        settings: &SinkSettings,
    ) -> Result<Arc<dyn Sink>, BoxError>;
    fn source(
        &self,
        context: &SourceContext,
        settings: &SourceSettings,
    ) -> Result<Box<dyn Source>, BoxError>;
    fn health_check(&self) -> BoxFuture<'_, Result<String, BoxError>>;
    fn probe_sink<'a>(
        &'a self,
        settings: &'a SinkSettings,
    ) -> BoxFuture<'a, Option<Result<String, BoxError>>>;
    fn probe_source<'a>(
        &'a self,
        settings: &'a SourceSettings,
    ) -> BoxFuture<'a, Vec<(String, Result<String, BoxError>)>>;
    fn flush(&self, timeout: Duration) -> BoxFuture<'_, ()>;
}
