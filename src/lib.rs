//! mqbridge: consumes an MQTT broker through MQTT v5 shared subscriptions and delivers every
//! message to a sink (Kafka, a JSON-lines file), acknowledging each message to the broker only
//! after the sink has it.
//!
//! # Layout
//! - `config`: the TOML file: model, section-by-section loading with located problems,
//!   validation, example.
//! - `sources`: where routes take messages from: `mqtt/` (shared-subscription consumers with
//!   epoch-checked acks), behind the `Delivery`/`Acker` shape the pipeline sees.
//! - `pipeline`: written once for every route: batching by key with per-key order, delivery
//!   with retries and dead letters, acks in receive order per lane.
//! - `sinks`: where routes deliver: the `Sink` trait, the kind registry, `kafka/`, `file/`.
//! - `route`: the supervisor and its per-route handles (start, stop, state, counts).
//! - `mqtt`: MQTT client options and a publisher that waits for PUBACKs.
//! - `message`: the neutral message sources fill and sinks render.
//! - `record`: the message's JSON shape (file sink, dead letters).
//! - `event`: the event a function receives (a batch of records; `schema/`).
//! - `template`: `{topic.N}`-style templates for sink-side names.
//! - `topic`: MQTT filter and Kafka topic name rules.
//! - `tls`: rustls client settings (roots, client certificate) for the bridge's clients.
//! - `dead_letter`: where permanently refused messages go.
//! - `events`: telemetry events (metrics and logs together).
//! - `admin`: the `/metrics` and `/health` listener.

pub mod admin;
pub mod config;
pub mod dead_letter;
pub mod event;
pub mod events;
pub mod message;
pub mod mqtt;
pub mod pipeline;
pub mod record;
pub mod route;
pub mod sinks;
pub mod sources;
pub mod template;
pub mod tls;
pub mod topic;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::Config;
use crate::dead_letter::DeadLetter;
use crate::mqtt::Endpoint;
use crate::route::{Shared, StartError, Supervisor};
use crate::sinks::{BoxError, Connection};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Mqtt(#[from] mqtt::OptionsError),
    #[error("connection \"{0}\": {1}")]
    Connection(String, #[source] BoxError),
    #[error(transparent)]
    Route(#[from] StartError),
    #[error("{0}")]
    DeadLetter(std::io::Error),
    #[error("admin listener: {0}")]
    Admin(std::io::Error),
    #[error("{0}")]
    RouteFailed(String),
}

/// Runs the bridge until `shutdown` completes, then stops intake, finishes and acknowledges
/// in-flight messages (for at most `shutdown_timeout`) and disconnects, keeping the sessions.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    admin::metrics();
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let endpoint = Endpoint::new(&config.mqtt)?;
    let connections = Arc::new(connect(&config).await?);
    tokio::spawn(health_checks(connections.clone()));
    let (dead_letter, _dl_task) = DeadLetter::build(
        &config.dead_letter,
        &endpoint,
        &config.mqtt.client_id_prefix,
    )
    .await
    .map_err(RunError::DeadLetter)?;
    let dead_letter = Arc::new(dead_letter);
    let stop_admin = CancellationToken::new();
    if let Some(listen) = config.admin.listen {
        admin::serve(listen, stop_admin.clone())
            .await
            .map_err(RunError::Admin)?;
    }
    let mut supervisor = Supervisor::new(Shared {
        endpoint: endpoint.clone(),
        mqtt: config.mqtt.clone(),
        connections: connections.clone(),
        dead_letter: dead_letter.clone(),
        shutdown: CancellationToken::new(),
    });
    let mut consumers = 0;
    for route in config.routes.iter().filter(|r| r.enabled) {
        supervisor.start(route)?;
        consumers += route.consumers;
    }
    info!(broker = %endpoint.address(), routes = config.routes.len(), consumers, "mqbridge running");
    let outcome = tokio::select! {
        _ = shutdown => Ok(()),
        failure = supervisor.unexpected_end() => Err(RunError::RouteFailed(failure)),
    };
    info!("shutting down: finishing in-flight messages");
    let finished = supervisor.stop_all(config.shutdown_timeout).await;
    stop_admin.cancel();
    dead_letter.close().await;
    if finished {
        for c in connections.values() {
            c.flush(Duration::from_secs(5)).await;
        }
    }
    // Destroying a producer whose brokers are unreachable blocks for seconds; everything acked is
    // already delivered, so let that happen off the runtime (the binary exits without waiting).
    std::thread::spawn(move || drop(connections));
    match &outcome {
        Err(e) => error!(error = %e, "mqbridge stopped because of a failure"),
        Ok(()) => info!("mqbridge stopped"),
    }
    outcome
}

/// Builds every connection's client.
async fn connect(config: &Config) -> Result<BTreeMap<String, Connection>, RunError> {
    let mut connections = BTreeMap::new();
    for (name, c) in &config.connections {
        let live = c
            .connect(name)
            .await
            .map_err(|e| RunError::Connection(name.clone(), e))?;
        connections.insert(name.clone(), live);
    }
    Ok(connections)
}

/// The connection check, once at startup: each endpoint reachable and authenticated.
async fn health_checks(connections: Arc<BTreeMap<String, Connection>>) {
    for (name, c) in connections.iter() {
        match c.health_check().await {
            Ok(detail) => events::ConnectionHealthy {
                connection: name,
                detail: &detail,
            }
            .emit(),
            Err(e) => events::ConnectionUnhealthy {
                connection: name,
                error: &e.to_string(),
            }
            .emit(),
        }
    }
}
