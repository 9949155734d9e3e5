//! The Kafka kind's entry point (`impl Connector for Kafka`): checks of its settings, the
//! connection's producer and a route's sink.

use std::sync::Arc;
use std::time::Duration;

use super::config::{KafkaConnectionConfig, KafkaRouteConfig};
use super::connection::{client_config, ConfigRefused, KafkaConnection};
use super::sink::KafkaRouteSink;
use super::source::KafkaSource;
use crate::connectors::{Connector, OpenReader, RouteContext};
use crate::flow::{BoxError, Sink};
use crate::settings::Check;
use crate::sources::{ReadSpec, Reader};
use crate::topic::check_kafka_topic;

/// librdkafka settings the bridge owns: its delivery guarantee depends on them.
const FIXED_LIBRDKAFKA: &[&str] = &[
    "acks",
    "request.required.acks",
    "enable.idempotence",
    "bootstrap.servers",
    "metadata.broker.list",
    "compression.type",
    "compression.codec",
    "message.timeout.ms",
    "delivery.timeout.ms",
];

/// The Kafka connection kind.
pub struct Kafka;

impl Connector for Kafka {
    const NAME: &'static str = "kafka";
    const READABLE: bool = true;
    const ORDERED_BY_DEFAULT: bool = true;
    type ConnectionConfig = KafkaConnectionConfig;
    type RouteConfig = KafkaRouteConfig;
    type Connection = KafkaConnection;

    fn check_connection(k: &KafkaConnectionConfig, check: &mut Check<'_>) {
        if k.bootstrap_servers
            .split(',')
            .any(|s| s.trim().rsplit_once(':').is_none())
        {
            let msg = format!("\"{}\" is not a host:port list", k.bootstrap_servers);
            check.field("bootstrap_servers", msg);
        }
        let mut fixed_ok = true;
        for key in k.librdkafka.keys() {
            if FIXED_LIBRDKAFKA.contains(&key.as_str()) {
                fixed_ok = false;
                let msg = "set by the bridge (use the connection's own keys, or leave it: \
                           acks=all and idempotence are what make delivery safe)";
                check.field(&format!("librdkafka.{key}"), msg);
            }
        }
        if fixed_ok {
            if let Err(e) = client_config(k).create_native_config() {
                let e = ConfigRefused::from(e);
                check.field(
                    "librdkafka",
                    format!("librdkafka refuses the settings: {e}"),
                );
            }
        }
        if k.delivery_timeout < Duration::from_secs(1) {
            check.field("delivery_timeout", "must be at least 1s");
        }
    }

    fn check_route(r: &KafkaRouteConfig, check: &mut Check<'_>) {
        match &r.topic {
            None => check.field(
                "topic",
                "missing: a Kafka route needs a topic (or template)",
            ),
            Some(t) => {
                if let Some(Err(e)) = t.as_literal().map(check_kafka_topic) {
                    check.field("topic", e);
                }
            }
        }
    }

    async fn connect(name: &str, c: &KafkaConnectionConfig) -> Result<KafkaConnection, BoxError> {
        Ok(KafkaConnection::build(name, c)?)
    }

    fn route_sink(
        connection: &KafkaConnection,
        _: &RouteContext<'_>,
        route: &KafkaRouteConfig,
    ) -> Result<Arc<dyn Sink>, BoxError> {
        Ok(Arc::new(KafkaRouteSink::new(connection.slot(), route)?))
    }

    async fn probe_route(
        connection: &KafkaConnection,
        route: &KafkaRouteConfig,
    ) -> Option<Result<String, BoxError>> {
        let topic = route.topic.as_ref()?.as_literal()?.to_owned();
        Some(connection.topic_check(topic).await)
    }

    fn open_reader(c: &KafkaConnectionConfig, spec: ReadSpec) -> Option<OpenReader> {
        let c = c.clone();
        Some(Box::pin(async move {
            KafkaSource::start(&c, &spec).map(|s| Box::new(s) as Box<dyn Reader>)
        }))
    }

    fn check_reader(spec: &ReadSpec, uses_tag: bool, check: &mut Check<'_>) {
        if let Err(e) = check_kafka_topic(&spec.topic) {
            check.field("topic", e);
        }
        if spec.tags != "*" {
            check.field("tags", "a RocketMQ filter; Kafka topics have no tags");
        }
        if uses_tag {
            check.field("mqtt_topic", "`{tag}`: Kafka records have no tag");
        }
        if spec.group.is_empty() {
            check.field("group", "empty");
        }
    }

    async fn probe_topic(
        connection: &KafkaConnection,
        topic: &str,
    ) -> Option<Result<String, BoxError>> {
        Some(connection.topic_check(topic.to_owned()).await)
    }

    async fn health_check(connection: &KafkaConnection) -> Result<String, BoxError> {
        connection.health_check().await
    }

    async fn flush(connection: &KafkaConnection, timeout: Duration) {
        connection.flush(timeout).await
    }
}
