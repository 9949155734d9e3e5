//! mqbridge: consumes an MQTT broker through MQTT v5 shared subscriptions and delivers every
//! message to a sink (Kafka, RocketMQ, a function: SCF, HTTP or a local command, a JSON-lines
//! file), acknowledging each message to the broker only after the sink has it; and carries
//! Kafka and RocketMQ topics back to the broker (downlinks), committing each offset only after
//! the broker acknowledged the message.
//!
//! # Layout
//! - `config`: the TOML file: model, section-by-section loading with located problems,
//!   validation, example.
//! - `connectors`: one folder per external system, holding everything the bridge knows of it:
//!   its settings, client, sink and (where it can be read) source: `mqtt/`, `kafka/`,
//!   `rocketmq/`, `http/`, `scf/`, `exec/`, `file/`; the `Connector` trait a kind implements,
//!   the registry (one line per kind) and the `Sink` trait.
//! - `sources`: the source side of the engine: the `Delivery`/`Acker` shape the pipeline sees,
//!   the runner of a Kafka or RocketMQ group member (`records`), what a consumer shows.
//! - `pipeline`: written once for every flow: batching by key with per-key order, delivery
//!   with retries and dead letters, acks in receive order per lane.
//! - `rules`: a flow's `schema`, `where` and `transform` (VRL, JSON Schema), applied as the
//!   pipeline takes each message; `test-rule` tries them on samples.
//! - `route`: the supervisor and its per-flow handles (start, stop, pause, state, counts), for
//!   routes and downlinks alike.
//! - `downlinks`: the `[[downlinks]]` settings (Kafka or RocketMQ to the MQTT broker).
//! - `control`: the running bridge's loop and its commands: states, pause and resume, reload,
//!   readiness, connection checks.
//! - `message`: the neutral message sources fill and sinks render.
//! - `record`: the message's JSON shape (file sink, dead letters).
//! - `event`: the event a function receives (a batch of records; `schema/`).
//! - `template`: `{topic.N}`-style templates for sink-side names.
//! - `topic`: MQTT filter and Kafka topic name rules.
//! - `tls`: rustls client settings (roots, client certificate) for the bridge's clients.
//! - `dead_letter`: where permanently refused messages go.
//! - `events`: telemetry events (metrics and logs together).
//! - `admin`: the operator's HTTP API and status page, and the CLI's client for it.
//! - `check`: `mqbridge check`, the connection check from the command line.

// rocketmq-client-rust's send futures are deep: proving them `Send` takes more than the
// default 128 steps.
#![recursion_limit = "256"]

pub mod admin;
pub mod check;
pub mod config;
pub mod connectors;
pub mod control;
pub mod dead_letter;
pub mod events;
pub mod flow;
pub mod message;
pub mod pipeline;
pub mod record;
pub mod route;
pub mod rules;
pub mod settings;
pub mod sources;
pub mod template;
pub mod tls;
pub mod topic;

use std::future::Future;
use std::sync::{Arc, RwLock};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
pub use crate::control::RunError;
use crate::control::{AdminUpdate, Control};

/// Runs the bridge until `shutdown` completes, then stops intake, finishes and acknowledges
/// in-flight messages (for at most `shutdown_timeout`) and disconnects, keeping the sessions.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    run_with(config, shutdown, Control::new()).await
}

/// The same, taking commands (pause, resume, reload, ...) from `control`'s handles. The admin
/// listener, when `[admin] listen` asks for one, serves until the bridge stops.
pub async fn run_with(
    config: Config,
    shutdown: impl Future<Output = ()>,
    control: Control,
) -> Result<(), RunError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    admin::metrics();
    let access =
        admin::Access::of(&config.admin).map_err(|e| RunError::Admin(std::io::Error::other(e)))?;
    let access = Arc::new(RwLock::new(access));
    let stop_admin = CancellationToken::new();
    if let Some(listen) = config.admin.listen {
        admin::serve(listen, stop_admin.clone(), control.handle(), access.clone())
            .await
            .map_err(RunError::Admin)?;
    }
    let update: AdminUpdate = Box::new(move |admin| {
        let new = admin::Access::of(admin)?;
        *access.write().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(())
    });
    let outcome = control::run(config, shutdown, control, update).await;
    stop_admin.cancel();
    outcome
}
