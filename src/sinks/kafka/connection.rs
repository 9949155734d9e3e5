//! A Kafka connection: one producer shared by every route that names it. The producer is
//! idempotent with `acks=all`, so a delivery report means the record is replicated and a
//! librdkafka retry cannot duplicate or reorder it.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};

use super::sink::KafkaRouteSink;
use crate::config::{KafkaConnectionConfig, RouteConfig};
use crate::events;
use crate::sinks::BuildError;

pub struct KafkaConnection {
    producer: FutureProducer,
}

/// The librdkafka configuration for a connection (also used by `validate` to check the
/// pass-through settings without starting a client).
pub fn client_config(c: &KafkaConnectionConfig) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("client.id", "mqbridge");
    cfg.set("linger.ms", "5");
    cfg.set("log.connection.close", "false");
    for (key, value) in &c.librdkafka {
        cfg.set(key, value.expose());
    }
    cfg.set("bootstrap.servers", &c.bootstrap_servers);
    cfg.set("compression.type", c.compression.as_str());
    cfg.set("enable.idempotence", "true");
    cfg.set("acks", "all");
    cfg.set(
        "message.timeout.ms",
        c.delivery_timeout.as_millis().to_string(),
    );
    cfg
}

/// A librdkafka error without the setting's value, which may be a secret.
pub fn describe_config_error(e: &KafkaError) -> String {
    match e {
        KafkaError::ClientConfig(_, description, key, _value) => format!("{key}: {description}"),
        other => other.to_string(),
    }
}

impl KafkaConnection {
    pub fn build(name: &str, c: &KafkaConnectionConfig) -> Result<Self, BuildError> {
        let producer = client_config(c).create().map_err(|e| {
            let e = describe_config_error(&e);
            BuildError::Kafka(name.to_owned(), format!("cannot create the producer: {e}"))
        })?;
        Ok(KafkaConnection { producer })
    }

    pub fn route_sink(&self, route: &RouteConfig) -> Result<KafkaRouteSink, String> {
        KafkaRouteSink::new(self.producer.clone(), route)
    }

    /// Connection check: fetches cluster metadata, which needs reachability and authentication.
    pub async fn health_check(&self, name: &str) {
        let producer = self.producer.clone();
        let result = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(10))
                .map(|m| m.brokers().len())
        })
        .await;
        match result {
            Ok(Ok(brokers)) => events::ConnectionHealthy {
                connection: name,
                detail: &format!("{brokers} broker(s)"),
            }
            .emit(),
            Ok(Err(e)) => events::ConnectionUnhealthy {
                connection: name,
                error: &e.to_string(),
            }
            .emit(),
            Err(e) => events::ConnectionUnhealthy {
                connection: name,
                error: &e.to_string(),
            }
            .emit(),
        }
    }

    pub async fn flush(&self, timeout: Duration) {
        let producer = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
    }
}
