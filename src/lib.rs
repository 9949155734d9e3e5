//! mqbridge: carries MQTT data into the systems where it is processed and back. Every route is
//! a source, its rules and a sink, each built by its connection's kind: MQTT v5
//! shared-subscription consumers, or a Kafka or RocketMQ consumer group, delivering to Kafka,
//! RocketMQ, a function (SCF, HTTP or a local command), a JSON-lines file or an MQTT broker. A
//! message is acknowledged to its source (a PUBACK, an offset commit) only after the sink has it.
//!
//! # Layout
//! From the ground up; each module imports only those listed before it.
//! - `message`, `topic`, `tls`: the neutral message sources fill and sinks render; MQTT, Kafka
//!   and RocketMQ name rules; rustls client settings.
//! - `template`, `record`: `{topic.N}`-style templates for names built per message; the
//!   message's JSON shape (file sink, dead letters).
//! - `flow`: what every layer shares: the sink and source contracts (`Sink`, `Retry`,
//!   `Delivery`, `Acker`), the pause switch, what consumers and routes show, dead letters.
//! - `events`: telemetry: each event writes its metrics, its log line and the status counts.
//! - `rules`: a route's `schema`, `where` and `transform` (VRL, JSON Schema); `test-rule`.
//! - `settings`: reading one section at a time with located problems, checks, secrets.
//! - `pipeline`: written once for every route: batching by key with per-key order, delivery
//!   with retries and dead letters, acks in receive order per lane; what a source is to it.
//! - `sources`: running a Kafka or RocketMQ group member as a route's source, and its lag.
//! - `connectors`: one folder per external system, holding everything the bridge knows of it:
//!   its settings, client, sink, source and metadata both ways (`mqtt/`, `kafka/`,
//!   `rocketmq/`, `http/`, `exec/`, `scf/`, `file/`); the `Connector` trait, the registry (one
//!   line per kind) and the values bound to their kind.
//! - `config`: the TOML file: model, loading (`[[routes]]` and `[[downlinks]]` into routes),
//!   validation, example.
//! - `dead_letter`: where permanently refused messages go.
//! - `route`: the supervisor and its per-route handles (start, stop, pause, state, counts).
//! - `check`: `mqbridge check`, the connection check from the command line.
//! - `control`: the running bridge's loop and its commands: states, pause and resume, reload,
//!   readiness, connection checks.
//! - `admin`: the operator's HTTP API and status page, and the CLI's client for it.

// rocketmq-client-rust's send futures are deep: proving them `Send` takes more than the
// default 128 steps.
#![recursion_limit = "256"]

pub mod admin;
pub mod buffer;
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
pub mod replay;
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
