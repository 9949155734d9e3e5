//! mqbridge: consumes an MQTT broker through MQTT v5 shared subscriptions and delivers every
//! message to Kafka (or a JSON-lines file), acknowledging each message to the broker only after
//! the sink has it.
//!
//! # Layout
//! - `config`: the TOML file: model, loading with located problems, validation, example.
//! - `mqtt`: client options, shared-subscription consumers with in-order acks, a publisher.
//! - `message`: the bridge's message (a PUBLISH with its properties and metadata).
//! - `record`: the message's JSON shape (file sink, dead letters).
//! - `template`: `{topic.N}`-style templates for Kafka topics and keys.
//! - `topic`: MQTT filter and Kafka topic name rules.
//! - `sinks`: where routes deliver: `kafka/`, `file/`.
//! - `route`: consumers, batching workers, delivery with retries and dead letters.
//! - `dead_letter`: where permanently refused messages go.
//! - `events`: telemetry events (metrics and logs together).
//! - `admin`: the `/metrics` and `/health` listener.

pub mod admin;
pub mod config;
pub mod dead_letter;
pub mod events;
pub mod message;
pub mod mqtt;
pub mod record;
pub mod route;
pub mod sinks;
pub mod template;
pub mod topic;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::dead_letter::DeadLetter;
use crate::mqtt::Endpoint;
use crate::route::RouteContext;
use crate::sinks::{Connection, Connections, RouteSink};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Mqtt(#[from] mqtt::OptionsError),
    #[error(transparent)]
    Sink(#[from] sinks::BuildError),
    #[error("{0}")]
    DeadLetter(std::io::Error),
    #[error("admin listener: {0}")]
    Admin(std::io::Error),
    #[error("a route task stopped unexpectedly: {0}")]
    TaskFailed(String),
}

/// Runs the bridge until `shutdown` completes, then stops intake, finishes and acknowledges
/// in-flight messages (for at most `shutdown_timeout`) and disconnects, keeping the sessions.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    admin::metrics();
    let endpoint = Endpoint::new(&config.mqtt)?;
    let mut connections = Connections::new();
    for (name, c) in &config.connections {
        connections.insert(name.clone(), Connection::build(name, c).await?);
    }
    let connections = Arc::new(connections);
    let checks = connections.clone();
    tokio::spawn(async move {
        for (name, c) in checks.iter() {
            c.health_check(name).await;
        }
    });
    let (dead_letter, _dl_task) = DeadLetter::build(
        &config.dead_letter,
        &endpoint,
        &config.mqtt.client_id_prefix,
    )
    .await
    .map_err(RunError::DeadLetter)?;
    let dead_letter = Arc::new(dead_letter);
    let token = CancellationToken::new();
    let hard_stop = CancellationToken::new();
    if let Some(listen) = config.admin.listen.as_deref().and_then(|l| l.parse().ok()) {
        admin::serve(listen, token.clone())
            .await
            .map_err(RunError::Admin)?;
    }
    let mut tasks = JoinSet::new();
    let mut consumers = 0;
    for route in config.routes.iter().filter(|r| r.enabled) {
        let ctx = Arc::new(RouteContext {
            name: route.name.as_str().into(),
            sink: RouteSink::build(route, &connections)?,
            dead_letter: dead_letter.clone(),
            shutdown: token.clone(),
            hard_stop: hard_stop.clone(),
        });
        route::start(route, &config.mqtt, &endpoint, ctx, &mut tasks);
        consumers += route.consumers;
    }
    info!(broker = %endpoint.address(), routes = config.routes.len(), consumers, "mqbridge running");
    let outcome = tokio::select! {
        _ = shutdown => Ok(()),
        Some(ended) = tasks.join_next() => Err(RunError::TaskFailed(match ended {
            Err(e) => e.to_string(),
            Ok(()) => "a consumer ended on its own".into(),
        })),
    };
    info!("shutting down: finishing in-flight messages");
    token.cancel();
    drain(&mut tasks, config.shutdown_timeout, &hard_stop).await;
    dead_letter.close().await;
    if !hard_stop.is_cancelled() {
        for c in connections.values() {
            c.flush(Duration::from_secs(5)).await;
        }
    }
    // Destroying a producer whose brokers are unreachable blocks for seconds; everything acked is
    // already in Kafka, so let that happen off the runtime (the binary exits without waiting).
    std::thread::spawn(move || drop(connections));
    if let Err(e) = &outcome {
        error!(error = %e, "mqbridge stopped because of a failure");
    } else {
        info!("mqbridge stopped");
    }
    outcome
}

/// Waits for the route tasks to finish in-flight work, ack and disconnect. Past `limit`, pending
/// deliveries are abandoned (left unacknowledged) so that the workers can still ack what did
/// finish and disconnect cleanly; tasks still running after a short grace are aborted.
async fn drain(tasks: &mut JoinSet<()>, limit: Duration, hard_stop: &CancellationToken) {
    if join_all_within(tasks, limit).await {
        return;
    }
    warn!(
        ?limit,
        "shutdown timeout: unfinished deliveries are left for the broker to redeliver"
    );
    hard_stop.cancel();
    if !join_all_within(tasks, Duration::from_secs(3)).await {
        tasks.shutdown().await;
    }
}

async fn join_all_within(tasks: &mut JoinSet<()>, limit: Duration) -> bool {
    let all = async {
        while let Some(ended) = tasks.join_next().await {
            if let Err(e) = ended {
                error!(error = %e, "route task failed during shutdown");
            }
        }
    };
    tokio::time::timeout(limit, all).await.is_ok()
}
