//! The RocketMQ kind's entry point (`impl Connector for Rocketmq`): checks of its settings, the
//! connection's producer and a route's sink.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::config::{RocketmqConnectionConfig, RocketmqRouteConfig};
use super::connection::RocketmqConnection;
use super::sink::RocketmqSink;
use super::source::RocketmqSource;
use crate::connectors::{Connector, OpenReader, RouteContext};
use crate::flow::{BoxError, Sink};
use crate::settings::resolve_relative;
use crate::settings::{Check, Secret};
use crate::sources::{ReadSpec, Reader};
use crate::topic::{check_rocketmq_group, check_rocketmq_topic};

pub struct Rocketmq;

impl Connector for Rocketmq {
    const NAME: &'static str = "rocketmq";
    const READABLE: bool = true;
    /// Batches go to any queue; a route asks for per-topic order (queue by hash) itself.
    const ORDERED_BY_DEFAULT: bool = false;
    type ConnectionConfig = RocketmqConnectionConfig;
    type RouteConfig = RocketmqRouteConfig;
    type Connection = Arc<RocketmqConnection>;

    fn resolve_paths(c: &mut RocketmqConnectionConfig, base: &Path) {
        resolve_relative(base, [&mut c.access_key_file, &mut c.secret_key_file]);
    }

    fn files_read(c: &RocketmqConnectionConfig) -> Vec<PathBuf> {
        [&c.access_key_file, &c.secret_key_file]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    fn check_connection(c: &RocketmqConnectionConfig, check: &mut Check<'_>) {
        if c.namesrv.is_empty() {
            check.field(
                "namesrv",
                "empty: name at least one name server, \"host:9876\"",
            );
        }
        for addr in &c.namesrv {
            if addr
                .rsplit_once(':')
                .is_none_or(|(_, port)| port.parse::<u16>().is_err())
            {
                check.field("namesrv", format!("\"{addr}\" is not host:port"));
            }
        }
        if let Err(e) = check_rocketmq_group(&c.producer_group) {
            check.field("producer_group", e);
        }
        Secret::check_inline_or_file(check, "access_key", &c.access_key, &c.access_key_file);
        Secret::check_inline_or_file(check, "secret_key", &c.secret_key, &c.secret_key_file);
        let access = c.access_key.is_some() || c.access_key_file.is_some();
        let secret = c.secret_key.is_some() || c.secret_key_file.is_some();
        if access != secret {
            check.field("secret_key", "ACL takes both `access_key` and `secret_key`");
        }
        if c.send_timeout < Duration::from_millis(100) {
            check.field("send_timeout", "must be at least 100ms");
        }
    }

    fn check_route(r: &RocketmqRouteConfig, check: &mut Check<'_>) {
        match &r.topic {
            None => check.field(
                "topic",
                "missing: a RocketMQ route needs a topic (or template)",
            ),
            Some(t) => {
                if let Some(Err(e)) = t.as_literal().map(check_rocketmq_topic) {
                    check.field("topic", e);
                }
            }
        }
    }

    async fn connect(
        _name: &str,
        c: &RocketmqConnectionConfig,
    ) -> Result<Arc<RocketmqConnection>, BoxError> {
        Ok(Arc::new(RocketmqConnection::start(c).await?))
    }

    fn route_sink(
        connection: &Arc<RocketmqConnection>,
        context: &RouteContext<'_>,
        route: &RocketmqRouteConfig,
    ) -> Result<Arc<dyn Sink>, BoxError> {
        Ok(Arc::new(RocketmqSink::new(
            connection.clone(),
            route,
            context.ordered,
        )))
    }

    async fn health_check(connection: &Arc<RocketmqConnection>) -> Result<String, BoxError> {
        connection.reachable().await
    }

    async fn probe_route(
        connection: &Arc<RocketmqConnection>,
        route: &RocketmqRouteConfig,
    ) -> Option<Result<String, BoxError>> {
        let topic = route.topic.as_ref()?.as_literal()?.to_owned();
        Some(connection.topic_queues(&topic).await)
    }

    fn open_reader(c: &RocketmqConnectionConfig, spec: ReadSpec) -> Option<OpenReader> {
        let c = c.clone();
        Some(Box::pin(async move {
            RocketmqSource::start(&c, &spec)
                .await
                .map(|s| Box::new(s) as Box<dyn Reader>)
        }))
    }

    fn check_reader(spec: &ReadSpec, _uses_tag: bool, check: &mut Check<'_>) {
        if let Err(e) = check_rocketmq_topic(&spec.topic) {
            check.field("topic", e);
        }
        if spec.tags.trim().is_empty() {
            check.field("tags", "empty: write \"*\" for every message");
        }
        if let Err(e) = check_rocketmq_group(&spec.group) {
            check.field("group", e);
        }
    }

    async fn probe_topic(
        connection: &Arc<RocketmqConnection>,
        topic: &str,
    ) -> Option<Result<String, BoxError>> {
        Some(connection.topic_queues(topic).await)
    }

    async fn flush(connection: &Arc<RocketmqConnection>, _timeout: Duration) {
        connection.shutdown().await;
    }
}
