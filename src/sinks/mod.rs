//! Sinks: where a route delivers. Each connection kind has its folder; a route gets a
//! `RouteSink` built from its connection and its own settings (topic and key templates).
//!
//! `send` returns one result per message; its errors say whether retrying can help
//! (`is_retriable`). Permanent errors go to the dead-letter path.

pub mod file;
pub mod kafka;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{ConnectionConfig, RouteConfig};
use crate::message::Message;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaSinkError),
    #[error(transparent)]
    File(#[from] file::FileSinkError),
}

impl SinkError {
    pub fn is_retriable(&self) -> bool {
        match self {
            SinkError::Kafka(e) => e.is_retriable(),
            SinkError::File(e) => e.is_retriable(),
        }
    }

    /// A short, fixed name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkError::Kafka(e) => e.kind(),
            SinkError::File(_) => "io",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("connection \"{0}\": {1}")]
    Kafka(String, String),
    #[error("connection \"{0}\": {1}")]
    File(String, std::io::Error),
    #[error("route \"{0}\": {1}")]
    Route(String, String),
}

/// A connection's running client, shared by the routes that use it.
pub enum Connection {
    Kafka(kafka::KafkaConnection),
    File(Arc<file::FileWriter>),
}

impl Connection {
    pub async fn build(name: &str, config: &ConnectionConfig) -> Result<Self, BuildError> {
        Ok(match config {
            ConnectionConfig::Kafka(k) => {
                Connection::Kafka(kafka::KafkaConnection::build(name, k)?)
            }
            ConnectionConfig::File(f) => Connection::File(Arc::new(
                file::FileWriter::open(&f.path, f.fsync)
                    .await
                    .map_err(|e| BuildError::File(name.to_owned(), e))?,
            )),
        })
    }

    /// Checks the endpoint is reachable (and authenticates); logs the outcome.
    pub async fn health_check(&self, name: &str) {
        if let Connection::Kafka(k) = self {
            k.health_check(name).await;
        }
    }

    /// Waits for what is queued in the client to be delivered, up to `timeout`.
    pub async fn flush(&self, timeout: std::time::Duration) {
        if let Connection::Kafka(k) = self {
            k.flush(timeout).await;
        }
    }
}

pub type Connections = BTreeMap<String, Connection>;

/// A route's view of its connection.
pub enum RouteSink {
    Kafka(kafka::KafkaRouteSink),
    File(Arc<file::FileWriter>),
}

impl RouteSink {
    pub fn build(route: &RouteConfig, connections: &Connections) -> Result<Self, BuildError> {
        let missing = || {
            BuildError::Route(
                route.name.clone(),
                format!("no connection \"{}\"", route.connection),
            )
        };
        Ok(
            match connections.get(&route.connection).ok_or_else(missing)? {
                Connection::Kafka(k) => RouteSink::Kafka(
                    k.route_sink(route)
                        .map_err(|e| BuildError::Route(route.name.clone(), e))?,
                ),
                Connection::File(f) => RouteSink::File(f.clone()),
            },
        )
    }

    pub async fn send(&self, batch: &[&Message]) -> Vec<Result<(), SinkError>> {
        match self {
            RouteSink::Kafka(k) => k
                .send(batch)
                .await
                .into_iter()
                .map(|r| r.map_err(Into::into))
                .collect(),
            RouteSink::File(f) => match f.write_batch(batch).await {
                Ok(()) => batch.iter().map(|_| Ok(())).collect(),
                Err(e) => {
                    let e = Arc::new(e);
                    batch
                        .iter()
                        .map(|_| Err(file::FileSinkError::Io(e.clone()).into()))
                        .collect()
                }
            },
        }
    }
}
