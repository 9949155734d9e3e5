//! The running bridge: builds the connections, the dead-letter path, the routes and the
//! downlinks, then owns them in one loop that answers the control commands (states, pause and resume, reload,
//! readiness) until the shutdown signal or a route's unexpected end; then stops every route
//! gracefully.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::checks::{self, Checks, Connections};
use super::plan::Stamps;
use super::status::{self, DownlinkStatus, Overview, Paused, ReloadOutcome, RouteStatus};
use super::{Command, Control, ControlError};
use crate::admin::{Access, SharedAccess};
use crate::config::Config;
use crate::connectors::mqtt::Endpoint;
use crate::connectors::Connection;
use crate::dead_letter::DeadLetter;
use crate::route::{Flow, Shared, Supervisor};
use crate::{admin, RunError};

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
    /// What the admin API lets through (token, host names), replaced on reload.
    pub(super) access: SharedAccess,
    pub(super) last_reload: Option<ReloadOutcome>,
}

/// Runs the bridge until `shutdown` completes, answering `control`'s commands meanwhile; then
/// stops intake, finishes and acknowledges in-flight messages (for at most
/// `shutdown_timeout`) and disconnects, keeping the sessions.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()>,
    mut control: Control,
) -> Result<(), RunError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    admin::metrics();
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let endpoint = Endpoint::new(&config.mqtt)?;
    let connections = connect_all(&config).await?;
    let (published, watched) = watch::channel(Arc::new(connections.clone()));
    let stop_checks = CancellationToken::new();
    let checks = checks::spawn(watched, config.admin.check_interval, stop_checks.clone());
    let dead_letter = DeadLetter::build(&config.dead_letter, &endpoint, &config.mqtt)
        .await
        .map_err(RunError::DeadLetter)?;
    let dead_letter = Arc::new(dead_letter);
    let (access, stop_admin) = serve_admin(&config, &control).await?;
    let shared = Shared {
        endpoint: endpoint.clone(),
        mqtt: config.mqtt.clone(),
        connections: Arc::new(connections.clone()),
        dead_letter: dead_letter.clone(),
        shutdown: CancellationToken::new(),
    };
    let (supervisor, consumers) = start_flows(&config, shared)?;
    info!(broker = %endpoint.address(), routes = config.routes.len(), consumers, downlinks = config.downlinks.len(), "mqbridge running");
    let mut bridge = Bridge {
        stamps: Stamps::of(&config),
        config,
        connections,
        supervisor,
        dead_letter,
        published,
        checks,
        access,
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
    bridge.stop(&[stop_admin, stop_checks]).await;
    match &outcome {
        Err(e) => error!(error = %e, "mqbridge stopped because of a failure"),
        Ok(()) => info!("mqbridge stopped"),
    }
    outcome
}

/// The admin API, when `[admin] listen` asks for it; its access rules, kept for reloads.
async fn serve_admin(
    config: &Config,
    control: &Control,
) -> Result<(Arc<RwLock<Access>>, CancellationToken), RunError> {
    let access =
        Access::of(&config.admin).map_err(|e| RunError::Admin(std::io::Error::other(e)))?;
    let access = Arc::new(RwLock::new(access));
    let stop_admin = CancellationToken::new();
    if let Some(listen) = config.admin.listen {
        admin::serve(listen, stop_admin.clone(), control.handle(), access.clone())
            .await
            .map_err(RunError::Admin)?;
    }
    Ok((access, stop_admin))
}

/// Starts every enabled route and downlink; returns the supervisor and the MQTT consumers
/// started.
fn start_flows(config: &Config, shared: Shared) -> Result<(Supervisor, u32), RunError> {
    let mut supervisor = Supervisor::new(shared);
    let mut consumers = 0;
    for route in config.routes.iter().filter(|r| r.enabled) {
        supervisor.start(route, false)?;
        consumers += route.consumers;
    }
    for d in config.downlinks.iter().filter(|d| d.enabled) {
        supervisor
            .start_downlink(d, false)
            .map_err(|e| RunError::Downlink(e.to_string()))?;
    }
    Ok((supervisor, consumers))
}

/// Builds every connection's client.
pub(super) async fn connect_all(config: &Config) -> Result<BTreeMap<String, Connection>, RunError> {
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

impl Bridge {
    /// Stops every flow (finishing in-flight messages within `shutdown_timeout`), then the
    /// tasks `others` stop, the dead-letter destination, and the connections (flushed when
    /// every flow finished).
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
                    self.supervisor.flows(),
                    &self.checks.results(),
                    self.config.admin.failing_after,
                );
                let _ = reply.send(readiness);
            }
        }
    }

    fn overview(&self) -> Overview {
        let (mut routes, mut downlinks) = (Vec::new(), Vec::new());
        for handle in self.supervisor.flows() {
            match handle.flow() {
                Flow::Route(r) => routes.push(RouteStatus::of(handle, r)),
                Flow::Downlink(d) => downlinks.push(DownlinkStatus::of(handle, d)),
            }
        }
        for route in self.config.routes.iter().filter(|r| !r.enabled) {
            routes.push(RouteStatus::disabled(route));
        }
        routes.sort_by(|a, b| a.name.cmp(&b.name));
        for d in self.config.downlinks.iter().filter(|d| !d.enabled) {
            downlinks.push(DownlinkStatus::disabled(d));
        }
        downlinks.sort_by(|a, b| a.name.cmp(&b.name));
        Overview {
            routes,
            downlinks,
            last_reload: self.last_reload.clone(),
        }
    }

    fn set_paused(&mut self, route: &str, paused: bool) -> Result<Paused, ControlError> {
        let handle = self
            .supervisor
            .flow(route)
            .ok_or_else(|| ControlError::NoRoute(route.to_owned()))?;
        if handle.is_paused() != paused {
            handle.set_paused(paused);
            crate::events::RoutePaused { route, paused }.emit();
        }
        Ok(match handle.flow() {
            Flow::Route(r) => Paused::Route(RouteStatus::of(handle, r)),
            Flow::Downlink(d) => Paused::Downlink(DownlinkStatus::of(handle, d)),
        })
    }
}
