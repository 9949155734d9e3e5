//! The Kafka kind's entry point (`impl Connector for Kafka`): checks of its settings, the
//! connection's producer, a route's sink and a route's source (a consumer-group member).

use std::sync::Arc;
use std::time::Duration;

use super::config::{KafkaConnectionConfig, KafkaSinkConfig, KafkaSourceConfig};
use super::connection::{client_config, ConfigRefused, KafkaConnection};
use super::sink::KafkaRouteSink;
use super::source::KafkaSource;
use crate::connectors::{Connector, SinkContext};
use crate::flow::{BoxError, Sink};
use crate::pipeline::{Source, SourceContext};
use crate::settings::Check;
use crate::sources::records;
use crate::sources::Reader;
use crate::template::Vocabulary;
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
    type SinkConfig = KafkaSinkConfig;
    type SourceConfig = KafkaSourceConfig;
    type Connection = KafkaConnection;

    fn read_topic(
        config: &KafkaConnectionConfig,
        topic: &str,
    ) -> Option<Result<Vec<(String, crate::message::Message)>, BoxError>> {
        let idle = std::time::Duration::from_secs(3);
        let read = super::read_all(config, topic, idle).map(|records| {
            let place = |r: &super::Record| format!("kafka:{topic}/{}@{}", r.partition, r.offset);
            records
                .into_iter()
                .map(|r| (place(&r), super::message(r.headers, r.payload)))
                .collect()
        });
        Some(read)
    }

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

    fn check_sink(r: &KafkaSinkConfig, _: Vocabulary, check: &mut Check<'_>) {
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

    fn sink(
        connection: &KafkaConnection,
        _: &SinkContext<'_>,
        route: &KafkaSinkConfig,
    ) -> Result<Arc<dyn Sink>, BoxError> {
        Ok(Arc::new(KafkaRouteSink::new(connection.slot(), route)?))
    }

    async fn probe_sink(
        connection: &KafkaConnection,
        route: &KafkaSinkConfig,
    ) -> Option<Result<String, BoxError>> {
        let topic = route.topic.as_ref()?.as_literal()?.to_owned();
        Some(connection.topic_check(topic).await)
    }

    fn complete_source(c: &mut KafkaSourceConfig, route: &str) {
        c.group.get_or_insert_with(|| format!("mqbridge-{route}"));
    }

    fn check_source(c: &KafkaSourceConfig, uses_tag: bool, check: &mut Check<'_>) {
        if let Err(e) = check_kafka_topic(&c.topic) {
            check.field("topic", e);
        }
        if uses_tag {
            check.field("mqtt_topic", "`{tag}`: Kafka records have no tag");
        }
        if c.group().is_empty() {
            check.field("group", "empty");
        }
    }

    fn membership(c: &KafkaSourceConfig) -> Option<String> {
        Some(c.group().to_owned())
    }

    fn source(
        _: &KafkaConnection,
        settings: &KafkaConnectionConfig,
        context: &SourceContext,
        c: &KafkaSourceConfig,
    ) -> Result<Box<dyn Source>, BoxError> {
        let with = (settings.clone(), c.clone());
        Ok(records::source(
            context,
            c.group(),
            with,
            |(s, c), name| async move {
                KafkaSource::start(&s, &c, &name).map(|r| Box::new(r) as Box<dyn Reader>)
            },
        ))
    }

    async fn probe_source(
        connection: &KafkaConnection,
        c: &KafkaSourceConfig,
    ) -> Vec<(String, Result<String, BoxError>)> {
        let verdict = connection.topic_check(c.topic.clone()).await;
        vec![("source".to_owned(), verdict)]
    }

    async fn health_check(connection: &KafkaConnection) -> Result<String, BoxError> {
        connection.health_check().await
    }

    async fn flush(connection: &KafkaConnection, timeout: Duration) {
        connection.flush(timeout).await
    }
}
