//! A connection's running client as the rest of the bridge holds it, whatever its kind
//! (`Connection`): a route's sink, the checks, the flush, and the settings it was built from
//! (to open readers).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::kind::{AnyConnection, Connector, RouteContext, Typed};
use super::{ConnectionConfig, OpenReader, RouteSinkConfig};
use crate::flow::BoxError;
use crate::flow::Sink;
use crate::sources::ReadSpec;

/// A connection's running client, shared by the routes that name it, and its settings.
#[derive(Clone)]
pub struct Connection {
    live: Arc<dyn AnyConnection>,
    config: Option<ConnectionConfig>,
}

impl<K: Connector> AnyConnection for Typed<K, K::Connection> {
    fn route_sink(
        &self,
        context: &RouteContext<'_>,
        route: &RouteSinkConfig,
    ) -> Result<Arc<dyn Sink>, BoxError> {
        let settings = route.settings::<K::RouteConfig>().ok_or_else(|| {
            format!(
                "a {} route cannot deliver to a {} connection",
                route.kind(),
                K::NAME
            )
        })?;
        K::route_sink(&self.0, context, settings)
    }
    fn health_check(&self) -> BoxFuture<'_, Result<String, BoxError>> {
        Box::pin(K::health_check(&self.0))
    }
    fn probe_route<'a>(
        &'a self,
        route: &'a RouteSinkConfig,
    ) -> BoxFuture<'a, Option<Result<String, BoxError>>> {
        Box::pin(async move {
            let settings = route.settings::<K::RouteConfig>()?;
            K::probe_route(&self.0, settings).await
        })
    }
    fn probe_topic<'a>(
        &'a self,
        topic: &'a str,
    ) -> BoxFuture<'a, Option<Result<String, BoxError>>> {
        Box::pin(K::probe_topic(&self.0, topic))
    }
    fn flush(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        Box::pin(K::flush(&self.0, timeout))
    }
}

impl Connection {
    /// The sink of the route `context` names, which names this connection.
    pub fn route_sink(
        &self,
        context: &RouteContext<'_>,
        route: &RouteSinkConfig,
    ) -> Result<Arc<dyn Sink>, BoxError> {
        self.live.route_sink(context, route)
    }
    pub async fn health_check(&self) -> Result<String, BoxError> {
        self.live.health_check().await
    }
    /// The route's own check (`Connector::probe_route`), where its kind has one.
    pub async fn probe_route(&self, route: &RouteSinkConfig) -> Option<Result<String, BoxError>> {
        self.live.probe_route(route).await
    }
    /// A downlink's source topic check (`Connector::probe_topic`), where its kind has one.
    pub async fn probe_topic(&self, topic: &str) -> Option<Result<String, BoxError>> {
        self.live.probe_topic(topic).await
    }
    pub async fn flush(&self, timeout: Duration) {
        self.live.flush(timeout).await
    }
    /// Opens a consumer-group member reading `spec`; `None` when the kind cannot be read.
    pub fn open_reader(&self, spec: ReadSpec) -> Option<OpenReader> {
        self.config.as_ref()?.open_reader(spec)
    }
    /// The settings it was built from.
    pub fn config(&self) -> Option<&ConnectionConfig> {
        self.config.as_ref()
    }
}

impl ConnectionConfig {
    /// Builds the running client (connects lazily where the client library does).
    pub async fn connect(&self, name: &str) -> Result<Connection, BoxError> {
        Ok(Connection {
            live: self.connect_any(name).await?,
            config: Some(self.clone()),
        })
    }
}
