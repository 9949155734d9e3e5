//! The RocketMQ kind's entry point (`impl Connector for Rocketmq`): checks of its settings, the
//! connection's producer, a route's sink and a route's source (a consumer-group member).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::config::{RocketmqConnectionConfig, RocketmqSinkConfig, RocketmqSourceConfig};
use super::connection::RocketmqConnection;
use super::sink::RocketmqSink;
use super::source::RocketmqSource;
use crate::connectors::{Connector, SinkContext};
use crate::flow::{BoxError, Sink};
use crate::pipeline::{Source, SourceContext};
use crate::settings::resolve_relative;
use crate::settings::{Check, Secret};
use crate::sources::records;
use crate::sources::Reader;
use crate::template::Vocabulary;
use crate::topic::{check_rocketmq_group, check_rocketmq_topic};

pub struct Rocketmq;

impl Connector for Rocketmq {
    const NAME: &'static str = "rocketmq";
    const READABLE: bool = true;
    /// Batches go to any queue; a route asks for per-topic order (queue by hash) itself.
    const ORDERED_BY_DEFAULT: bool = false;
    type ConnectionConfig = RocketmqConnectionConfig;
    type SinkConfig = RocketmqSinkConfig;
    type SourceConfig = RocketmqSourceConfig;
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

    fn check_sink(r: &RocketmqSinkConfig, _: Vocabulary, check: &mut Check<'_>) {
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

    fn sink(
        connection: &Arc<RocketmqConnection>,
        context: &SinkContext<'_>,
        route: &RocketmqSinkConfig,
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

    async fn probe_sink(
        connection: &Arc<RocketmqConnection>,
        route: &RocketmqSinkConfig,
    ) -> Option<Result<String, BoxError>> {
        let topic = route.topic.as_ref()?.as_literal()?.to_owned();
        Some(connection.topic_queues(&topic).await)
    }

    fn complete_source(c: &mut RocketmqSourceConfig, route: &str) {
        c.group.get_or_insert_with(|| format!("mqbridge-{route}"));
    }

    fn check_source(c: &RocketmqSourceConfig, _uses_tag: bool, check: &mut Check<'_>) {
        if let Err(e) = check_rocketmq_topic(&c.topic) {
            check.field("topic", e);
        }
        if c.tags.trim().is_empty() {
            check.field("tags", "empty: write \"*\" for every message");
        }
        if let Err(e) = check_rocketmq_group(c.group()) {
            check.field("group", e);
        }
    }

    fn membership(c: &RocketmqSourceConfig) -> Option<String> {
        Some(c.group().to_owned())
    }

    fn source(
        _: &Arc<RocketmqConnection>,
        settings: &RocketmqConnectionConfig,
        context: &SourceContext,
        c: &RocketmqSourceConfig,
    ) -> Result<Box<dyn Source>, BoxError> {
        let with = (settings.clone(), c.clone());
        Ok(records::source(
            context,
            c.group(),
            with,
            |(s, c), name| async move {
                let reader = RocketmqSource::start(&s, &c, &name).await?;
                Ok(Box::new(reader) as Box<dyn Reader>)
            },
        ))
    }

    async fn probe_source(
        connection: &Arc<RocketmqConnection>,
        c: &RocketmqSourceConfig,
    ) -> Vec<(String, Result<String, BoxError>)> {
        vec![("source".to_owned(), connection.topic_queues(&c.topic).await)]
    }

    async fn flush(connection: &Arc<RocketmqConnection>, _timeout: Duration) {
        connection.shutdown().await;
    }
}
