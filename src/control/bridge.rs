//! The running bridge: builds the connections, the dead-letter path and the routes, then owns
//! them in one loop that answers the control commands (states, pause and resume, reload,
//! readiness) until the shutdown signal or a route's unexpected end; then stops every route
//! gracefully.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::checks::{self, Checks, Connections};
use super::plan::Stamps;
use super::status::{self, Overview, ReloadOutcome, RouteStatus};
use super::{Command, Control, ControlError, RunError};
use crate::config::{AdminConfig, Config, Spelling};
use crate::connectors::Connection;
use crate::dead_letter::DeadLetter;
use crate::route::{Shared, Supervisor};

/// Takes what a reload made of `[admin]` (the admin API's token and host names); an error
/// keeps the running configuration.
pub type AdminUpdate = Box<dyn Fn(&AdminConfig) -> Result<(), String> + Send + Sync>;

/// What the loop owns.
pub(super) struct Bridge {
    pub(super) config: Config,
    pub(super) connections: BTreeMap<String, Connection>,
    /// The files the running configuration read secrets and certificates from.
    pub(super) stamps: Stamps,
    pub(super) supervisor: Supervisor,
    pub(super) dead_letter: Arc<DeadLetter>,
    pub(super) published: watch::Sender<Connections>,
    pub(super) checks: Arc<Checks>,
    pub(super) admin: AdminUpdate,
    pub(super) last_reload: Option<ReloadOutcome>,
}

/// Runs the bridge until `shutdown` completes, answering `control`'s commands meanwhile; then
/// stops intake, finishes and acknowledges in-flight messages (for at most
/// `shutdown_timeout`) and disconnects, keeping the sessions.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()>,
    mut control: Control,
    admin: AdminUpdate,
) -> Result<(), RunError> {
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let connections = connect_all(&config).await?;
    let (published, watched) = watch::channel(Arc::new(connections.clone()));
    let stop_checks = CancellationToken::new();
    let checks = checks::spawn(watched, config.admin.check_interval, stop_checks.clone());
    let budget = crate::flow::Budget::new(config.memory_budget);
    tokio::spawn(crate::admin::upkeep(budget.clone(), stop_checks.clone()));
    let connection = |name: &str| connections.get(name).cloned();
    let dead_letter = DeadLetter::build(&config.dead_letter, config.mqtt.as_ref(), connection)
        .await
        .map_err(RunError::DeadLetter)?;
    let dead_letter = Arc::new(dead_letter);
    let shared = Shared {
        connections: Arc::new(connections.clone()),
        dead_letter: dead_letter.clone(),
        window_bytes: config.window_bytes(),
        data_dir: config.data_dir.clone(),
        budget,
        shutdown: CancellationToken::new(),
    };
    let supervisor = start_routes(&config, shared)?;
    info!(
        routes = config.spelled(Spelling::Route).count(),
        downlinks = config.spelled(Spelling::Downlink).count(),
        running = supervisor.routes().count(),
        connections = connections.len(),
        "mqbridge running"
    );
    let mut bridge = Bridge {
        stamps: Stamps::of(&config),
        config,
        connections,
        supervisor,
        dead_letter,
        published,
        checks,
        admin,
        last_reload: None,
    };
    tokio::pin!(shutdown);
    let outcome = loop {
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            failure = bridge.supervisor.unexpected_end() => break Err(RunError::RouteFailed(failure)),
            Some(command) = control.rx.recv() => bridge.answer(command).await,
        }
    };
    info!("shutting down: finishing in-flight messages");
    // Commands sent from now on get no answer.
    control.rx.close();
    bridge.stop(&[stop_checks]).await;
    match &outcome {
        Err(e) => error!(error = %e, "mqbridge stopped because of a failure"),
        Ok(()) => info!("mqbridge stopped"),
    }
    outcome
}

/// Starts every enabled route.
fn start_routes(config: &Config, shared: Shared) -> Result<Supervisor, RunError> {
    let mut supervisor = Supervisor::new(shared);
    for route in config.routes.iter().filter(|r| r.enabled) {
        supervisor.start(route, false)?;
    }
    Ok(supervisor)
}

/// Builds every connection's client.
pub async fn connect_all(config: &Config) -> Result<BTreeMap<String, Connection>, RunError> {
    let mut connections = BTreeMap::new();
    for (name, c) in &config.connections {
        let live = c
            .connect(name)
            .await
            .map_err(|e| RunError::Connection(crate::config::connection_label(name), e))?;
        connections.insert(name.clone(), live);
    }
    Ok(connections)
}

impl Bridge {
    /// Stops every route (finishing in-flight messages within `shutdown_timeout`), then the
    /// tasks `others` stop, the dead-letter destination, and the connections (flushed when
    /// every route finished).
    async fn stop(mut self, others: &[CancellationToken]) {
        let finished = self.supervisor.stop_all(self.config.shutdown_timeout).await;
        others.iter().for_each(CancellationToken::cancel);
        self.dead_letter.close().await;
        let connections = std::mem::take(&mut self.connections);
        if finished {
            for c in connections.values() {
                c.flush(Duration::from_secs(5)).await;
            }
        }
        // Destroying a producer whose brokers are unreachable blocks for seconds; everything
        // acked is already delivered, so let that happen off the runtime (the binary exits
        // without waiting).
        std::thread::spawn(move || drop((connections, self)));
    }

    async fn answer(&mut self, command: Command) {
        match command {
            Command::Overview(reply) => {
                let _ = reply.send(self.overview());
            }
            Command::SetPaused {
                route,
                paused,
                reply,
            } => {
                let _ = reply.send(self.set_paused(&route, paused));
            }
            Command::Reload(reply) => {
                let outcome = self.reload().await;
                let _ = reply.send(outcome);
            }
            Command::Readiness(reply) => {
                let readiness = status::readiness(
                    self.supervisor.routes(),
                    &self.checks.results(),
                    self.config.admin.failing_after,
                );
                let _ = reply.send(readiness);
            }
        }
    }

    fn overview(&self) -> Overview {
        let running = self
            .supervisor
            .routes()
            .map(|h| (h.config(), RouteStatus::of(h)));
        let disabled = self.config.routes.iter().filter(|r| !r.enabled);
        let disabled = disabled.map(|r| (r, RouteStatus::disabled(r)));
        let (mut routes, mut downlinks) = (Vec::new(), Vec::new());
        for (config, status) in running.chain(disabled) {
            match config.spelling {
                Spelling::Route => routes.push(status),
                Spelling::Downlink => downlinks.push(status),
            }
        }
        routes.sort_by(|a, b| a.name.cmp(&b.name));
        downlinks.sort_by(|a, b| a.name.cmp(&b.name));
        Overview {
            routes,
            downlinks,
            last_reload: self.last_reload.clone(),
        }
    }

    fn set_paused(&mut self, route: &str, paused: bool) -> Result<RouteStatus, ControlError> {
        let handle = self
            .supervisor
            .route(route)
            .ok_or_else(|| ControlError::NoRoute(route.to_owned()))?;
        if handle.is_paused() != paused {
            handle.set_paused(paused);
            crate::events::RoutePaused { route, paused }.emit();
        }
        Ok(RouteStatus::of(handle))
    }
}
