//! A connection's running client as the rest of the bridge holds it, whatever its kind
//! (`bound::Connection`): a route's sink and source, the checks and the flush. Each kind's
//! settings were bound to it when the file was read; here they meet the client of their own
//! kind.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::bound::{
    AnyConnection, Connection, ConnectionConfig, Live, SinkSettings, SourceSettings,
};
use super::kind::{Connector, SinkContext};
use crate::flow::{BoxError, Sink};
use crate::pipeline::{Source, SourceContext};

/// A route names a connection of another kind than its settings were read for: only a bug in
/// the loader can bring this about.
fn mismatch(what: &str, settings: &str, kind: &str) -> BoxError {
    format!("{what} settings of a {settings} connection given to a {kind} connection").into()
}

impl<K: Connector> AnyConnection for Live<K> {
    fn sink(
        &self,
        context: &SinkContext<'_>,
        settings: &SinkSettings,
    ) -> Result<Arc<dyn Sink>, BoxError> {
        let own = settings.0.settings().downcast_ref::<K::SinkConfig>();
        let own = own.ok_or_else(|| mismatch("sink", settings.kind(), K::NAME))?;
        K::sink(&self.client, context, own)
    }
    fn source(
        &self,
        context: &SourceContext,
        settings: &SourceSettings,
    ) -> Result<Box<dyn Source>, BoxError> {
        let own = settings
            .settings
            .settings()
            .downcast_ref::<K::SourceConfig>();
        let own = own.ok_or_else(|| mismatch("source", settings.kind(), K::NAME))?;
        K::source(&self.client, &self.settings, context, own)
    }
    fn health_check(&self) -> BoxFuture<'_, Result<String, BoxError>> {
        Box::pin(K::health_check(&self.client))
    }
    fn probe_sink<'a>(
        &'a self,
        settings: &'a SinkSettings,
    ) -> BoxFuture<'a, Option<Result<String, BoxError>>> {
        Box::pin(async move {
            let own = settings.0.settings().downcast_ref::<K::SinkConfig>()?;
            K::probe_sink(&self.client, own).await
        })
    }
    fn probe_source<'a>(
        &'a self,
        settings: &'a SourceSettings,
    ) -> BoxFuture<'a, Vec<(String, Result<String, BoxError>)>> {
        Box::pin(async move {
            match settings
                .settings
                .settings()
                .downcast_ref::<K::SourceConfig>()
            {
                Some(own) => K::probe_source(&self.client, own).await,
                None => Vec::new(),
            }
        })
    }
    fn flush(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        Box::pin(K::flush(&self.client, timeout))
    }
}

impl Connection {
    /// The sink of the route `context` names, which delivers to this connection.
    pub fn sink(
        &self,
        context: &SinkContext<'_>,
        settings: &SinkSettings,
    ) -> Result<Arc<dyn Sink>, BoxError> {
        self.live.sink(context, settings)
    }
    /// The source of the route `context` names, which reads this connection.
    pub fn source(
        &self,
        context: &SourceContext,
        settings: &SourceSettings,
    ) -> Result<Box<dyn Source>, BoxError> {
        self.live.source(context, settings)
    }
    pub async fn health_check(&self) -> Result<String, BoxError> {
        self.live.health_check().await
    }
    /// A route's sink check (`Connector::probe_sink`), where its kind has one.
    pub async fn probe_sink(&self, settings: &SinkSettings) -> Option<Result<String, BoxError>> {
        self.live.probe_sink(settings).await
    }
    /// A route's source checks (`Connector::probe_source`).
    pub async fn probe_source(
        &self,
        settings: &SourceSettings,
    ) -> Vec<(String, Result<String, BoxError>)> {
        self.live.probe_source(settings).await
    }
    pub async fn flush(&self, timeout: Duration) {
        self.live.flush(timeout).await
    }
    /// The settings it was built from.
    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }
}

impl ConnectionConfig {
    /// Builds the running client (connects lazily where the client library does).
    pub async fn connect(&self, name: &str) -> Result<Connection, BoxError> {
        Ok(Connection {
            live: self.0.connect(name).await?,
            config: self.clone(),
        })
    }
}
