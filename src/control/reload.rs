//! Reloading the configuration (SIGHUP, `POST /reload`, `mqbridge reload`): the file is read
//! and validated first, and an invalid one changes nothing. Then only what changed restarts: a
//! changed connection (settings, or the content of a file it reads secrets or certificates
//! from) is built anew and the routes using it restart; a changed route restarts (drained
//! first: what it holds is delivered and acknowledged); an added route starts; a removed one
//! drains and stops. A change to `[mqtt]` or `[dead_letter]` restarts every route. Routes
//! untouched keep running and never disconnect. A paused route that restarts stays paused.
//! Downlinks are routes and follow the same rules (a restarting one finishes and commits its
//! batch first).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::bridge::Bridge;
use super::plan::{plan, Plan, Running, Stamps};
use super::status::ReloadOutcome;
use super::ControlError;
use crate::config::RouteConfig;
use crate::config::{self, Config};
use crate::connectors::Connection;
use crate::dead_letter::DeadLetter;
use crate::events;
use crate::message::now_ms;

/// What a reload did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub restarted: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
    /// Connections built anew (added or changed).
    pub connections: Vec<String>,
    /// Routes that could not start, and settings that take a restart of the bridge.
    pub notes: Vec<String>,
}

impl ReloadReport {
    fn started(&mut self, name: &str, again: bool) {
        match again {
            true => self.restarted.push(name.to_owned()),
            false => self.added.push(name.to_owned()),
        }
    }

    fn summary(&self) -> String {
        let list = |v: &[String]| match v.is_empty() {
            true => "none".to_owned(),
            false => v.join(", "),
        };
        let mut text = format!(
            "added: {}; restarted: {}; removed: {}; unchanged: {}",
            list(&self.added),
            list(&self.restarted),
            list(&self.removed),
            list(&self.unchanged)
        );
        for note in &self.notes {
            text.push_str("; ");
            text.push_str(note);
        }
        text
    }
}

/// What every route shares that a change to `[mqtt]` or `[dead_letter]` builds anew: the
/// dead-letter destination and the sources' window.
type Shared = (Arc<DeadLetter>, usize);

impl Bridge {
    pub(super) async fn reload(&mut self) -> Result<ReloadReport, ControlError> {
        let outcome = self.try_reload().await;
        let (ok, detail) = match &outcome {
            Ok(report) => (true, report.summary()),
            Err(e) => (false, e.to_string()),
        };
        events::Reloaded {
            ok,
            detail: &detail,
        }
        .emit();
        self.last_reload = Some(ReloadOutcome {
            at: now_ms(),
            ok,
            detail,
        });
        outcome
    }

    async fn try_reload(&mut self) -> Result<ReloadReport, ControlError> {
        let path = self.config.source.clone().ok_or(ControlError::NoSource)?;
        let new = config::load_file(&path).map_err(|e| ControlError::Invalid(e.to_string()))?;
        for warning in new.warnings() {
            tracing::warn!("{warning}");
        }
        let stamps = Stamps::of(&new);
        let (everything, changed_connections) = self.changes(&new, &stamps);
        let mut report = ReloadReport::default();
        // Build what is new before touching anything running: a failure leaves all as it was.
        let (built, replacement) =
            Self::build(&new, &changed_connections, everything, &self.connections).await?;
        report.connections = changed_connections.iter().cloned().collect();

        // Which routes stop, restart or start.
        let running: Vec<Running<RouteConfig>> = self
            .supervisor
            .routes()
            .map(|h| (h.name().to_owned(), h.is_paused(), h.config().clone()))
            .collect();
        let flows = plan(&running, &new.routes, everything, &changed_connections);
        report.unchanged = flows.unchanged.clone();

        // Drain what goes away or restarts, then swap what the flows share.
        let limit = new.shutdown_timeout;
        self.stop_flows(&flows, limit, &new, &mut report).await;
        report.removed = flows.removed.clone();
        let retired = self.swap_connections(built, &new);
        let connections = Arc::new(self.connections.clone());
        if new.memory_budget != self.config.memory_budget {
            report.notes.push(format!(
                "memory_budget changed from {} to {} bytes",
                self.config.memory_budget, new.memory_budget
            ));
        }
        let old_dead_letter = self.supervisor.update_shared(|shared| {
            shared.budget.resize(new.memory_budget);
            shared.connections = connections.clone();
            shared.data_dir = new.data_dir.clone();
            replacement.map(|(dead_letter, window_bytes)| {
                shared.window_bytes = window_bytes;
                shared.dead_letter = dead_letter.clone();
                std::mem::replace(&mut self.dead_letter, dead_letter)
            })
        });
        if let Some(old) = old_dead_letter {
            old.close().await;
        }
        self.start_flows(&flows, &mut report);
        if new.admin.listen != self.config.admin.listen {
            report
                .notes
                .push("[admin] listen changed: it takes effect when the bridge restarts".into());
        }
        (self.admin)(&new.admin).map_err(ControlError::Failed)?;
        let _ = self.published.send(connections);
        for old in &retired {
            old.flush(Duration::from_secs(5)).await;
        }
        std::thread::spawn(move || drop(retired));
        self.config = new;
        self.stamps = stamps;
        Ok(report)
    }

    /// Whether every flow restarts (`[mqtt]`, `[dead_letter]` or the broker's certificates
    /// changed), and the connections to build anew (settings or files read changed).
    fn changes(&self, new: &Config, stamps: &Stamps) -> (bool, BTreeSet<String>) {
        let old = &self.config;
        let everything = new.mqtt != old.mqtt
            || new.dead_letter != old.dead_letter
            || stamps.mqtt != self.stamps.mqtt;
        let changed = new
            .connections
            .iter()
            .filter(|(name, c)| {
                old.connections.get(*name) != Some(*c)
                    || stamps.connections.get(*name) != self.stamps.connections.get(*name)
            })
            .map(|(name, _)| name.clone())
            .collect();
        (everything, changed)
    }

    /// Drains and stops the flows that go away or restart.
    async fn stop_flows(
        &mut self,
        flows: &Plan<'_, RouteConfig>,
        limit: Duration,
        new: &Config,
        report: &mut ReloadReport,
    ) {
        for name in flows.stopping() {
            let buffer = self
                .supervisor
                .route(&name)
                .and_then(|h| h.buffer().cloned());
            let back = new.routes.iter().any(|r| r.name == name && r.enabled);
            if self.supervisor.stop(&name, limit, !back).await == Some(false) {
                report.notes.push(format!(
                    "\"{name}\" did not finish within {limit:?}: what it held is left to its source to deliver again"
                ));
            }
            // A disk buffer that still holds messages is kept, whatever the new file says.
            let buffered = new
                .routes
                .iter()
                .any(|r| r.name == name && r.enabled && r.buffer.disk().is_some());
            let Some(store) = buffer.filter(|_| !buffered) else {
                continue;
            };
            let held = store.level().messages;
            if held > 0 {
                let note = format!(
                    "\"{name}\" no longer runs with a disk buffer, which holds {held} messages: \
                     they stay in {} and are delivered when \"{name}\" runs with a disk buffer again",
                    store.path().display()
                );
                tracing::warn!(route = %name, "{note}");
                report.notes.push(note);
            }
        }
    }

    /// Puts the connections `built` in place and drops those `new` no longer has; returns the
    /// ones replaced or dropped, to flush and close.
    fn swap_connections(
        &mut self,
        built: BTreeMap<String, Connection>,
        new: &Config,
    ) -> Vec<Connection> {
        let mut retired: Vec<Connection> = Vec::new();
        for (name, live) in built {
            if let Some(old) = self.connections.insert(name, live) {
                retired.push(old);
            }
        }
        let gone: Vec<String> = self
            .connections
            .keys()
            .filter(|n| !new.connections.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            retired.extend(self.connections.remove(&name));
        }
        retired
    }

    /// The connections to build anew, connected, and when `everything` changes, the new MQTT
    /// endpoint and dead-letter destination.
    async fn build(
        new: &Config,
        changed: &BTreeSet<String>,
        everything: bool,
        running: &BTreeMap<String, Connection>,
    ) -> Result<(BTreeMap<String, Connection>, Option<Shared>), ControlError> {
        let mut built = BTreeMap::new();
        for name in changed {
            let live = new.connections[name].connect(name).await.map_err(|e| {
                let label = crate::config::connection_label(name);
                ControlError::Failed(format!("{label}: {e}"))
            })?;
            built.insert(name.clone(), live);
        }
        if !everything {
            return Ok((built, None));
        }
        let connection = |name: &str| built.get(name).or(running.get(name)).cloned();
        let dead_letter = DeadLetter::build(&new.dead_letter, new.mqtt.as_ref(), connection)
            .await
            .map_err(|e| ControlError::Failed(format!("dead letters: {e}")))?;
        Ok((built, Some((Arc::new(dead_letter), new.window_bytes()))))
    }

    /// Starts what restarts (paused if it was) and what was added.
    fn start_flows(&mut self, flows: &Plan<'_, RouteConfig>, report: &mut ReloadReport) {
        for (flow, paused, again) in flows.starts() {
            match self.supervisor.start(flow, paused) {
                Ok(()) => report.started(&flow.name, again),
                Err(e) => report.notes.push(format!("{e}")),
            }
        }
    }
}
