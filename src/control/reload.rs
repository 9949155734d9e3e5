//! Reloading the configuration (SIGHUP, `POST /reload`, `mqbridge reload`): the file is read
//! and validated first, and an invalid one changes nothing. Then only what changed restarts: a
//! changed connection (settings, or the content of a file it reads secrets or certificates
//! from) is built anew and the routes using it restart; a changed route restarts (drained
//! first: what it holds is delivered and acknowledged); an added route starts; a removed one
//! drains and stops. A change to `[mqtt]` or `[dead_letter]` restarts every route. Routes
//! untouched keep running and never disconnect. A paused route that restarts stays paused.
//! Downlinks follow the same rules (a restarting one finishes and commits its batch first).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::bridge::Bridge;
use super::status::ReloadOutcome;
use super::ControlError;
use crate::config::{self, Config};
use crate::dead_letter::DeadLetter;
use crate::downlinks::{DownlinkConfig, DownlinkShared};
use crate::events;
use crate::message::now_ms;
use crate::mqtt::Endpoint;
use crate::sinks::Connection;

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

/// Files and their contents (`None`: unreadable).
type Contents = Vec<(PathBuf, Option<Vec<u8>>)>;

/// The contents of the files a configuration reads secrets and certificates from, to tell a
/// rotated secret from an unchanged one.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Stamps {
    mqtt: Contents,
    connections: BTreeMap<String, Contents>,
}

fn read_all(paths: Vec<PathBuf>) -> Contents {
    paths
        .into_iter()
        .map(|p| {
            let content = std::fs::read(&p).ok();
            (p, content)
        })
        .collect()
}

impl Stamps {
    pub(super) fn of(config: &Config) -> Self {
        let mut mqtt = Vec::new();
        if let Some(tls) = &config.mqtt.tls {
            mqtt.extend(
                [&tls.ca_file, &tls.cert_file, &tls.key_file]
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
        }
        Stamps {
            mqtt: read_all(mqtt),
            connections: config
                .connections
                .iter()
                .map(|(name, c)| (name.clone(), read_all(c.files_read())))
                .collect(),
        }
    }
}

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
        let old = &self.config;
        let everything = new.mqtt != old.mqtt
            || new.dead_letter != old.dead_letter
            || stamps.mqtt != self.stamps.mqtt;
        let changed_connections: BTreeSet<String> = new
            .connections
            .iter()
            .filter(|(name, c)| {
                old.connections.get(*name) != Some(*c)
                    || stamps.connections.get(*name) != self.stamps.connections.get(*name)
            })
            .map(|(name, _)| name.clone())
            .collect();
        let mut report = ReloadReport::default();
        // Build what is new before touching anything running: a failure leaves all as it was.
        let mut built = BTreeMap::new();
        for name in &changed_connections {
            let live = new.connections[name]
                .connect(name)
                .await
                .map_err(|e| ControlError::Failed(format!("connection \"{name}\": {e}")))?;
            built.insert(name.clone(), live);
        }
        let replacement = match everything {
            false => None,
            true => {
                let endpoint =
                    Endpoint::new(&new.mqtt).map_err(|e| ControlError::Failed(e.to_string()))?;
                let dead_letter = DeadLetter::build(&new.dead_letter, &endpoint, &new.mqtt)
                    .await
                    .map_err(|e| ControlError::Failed(format!("dead letters: {e}")))?;
                Some((endpoint, Arc::new(dead_letter)))
            }
        };
        report.connections = changed_connections.iter().cloned().collect();

        // Which routes stop, restart or start.
        let wanted: BTreeMap<&str, &config::RouteConfig> = new
            .routes
            .iter()
            .filter(|r| r.enabled)
            .map(|r| (r.name.as_str(), r))
            .collect();
        let running: Vec<(String, bool, config::RouteConfig)> = self
            .supervisor
            .routes()
            .map(|h| (h.name().to_owned(), h.is_paused(), h.config().clone()))
            .collect();
        let mut restart = Vec::new();
        for (name, paused, current) in &running {
            match wanted.get(name.as_str()) {
                None => report.removed.push(name.clone()),
                Some(route) => {
                    let same = !everything
                        && *route == current
                        && !changed_connections.contains(&route.connection);
                    match same {
                        true => report.unchanged.push(name.clone()),
                        false => restart.push((name.clone(), *paused)),
                    }
                }
            }
        }
        let added: Vec<&str> = wanted
            .keys()
            .filter(|n| !running.iter().any(|(r, _, _)| r == *n))
            .copied()
            .collect();
        // Downlinks, by the same rules.
        let wanted_downlinks: BTreeMap<&str, &DownlinkConfig> = new
            .downlinks
            .iter()
            .filter(|d| d.enabled)
            .map(|d| (d.name.as_str(), d))
            .collect();
        let running_downlinks: Vec<(String, bool, DownlinkConfig)> = self
            .downlinks
            .iter()
            .map(|h| (h.name().to_owned(), h.is_paused(), h.config.clone()))
            .collect();
        let mut restart_downlinks = Vec::new();
        let mut removed_downlinks = Vec::new();
        for (name, paused, current) in &running_downlinks {
            match wanted_downlinks.get(name.as_str()) {
                None => removed_downlinks.push(name.clone()),
                Some(d) => {
                    let same = !everything
                        && *d == current
                        && !changed_connections.contains(&d.connection);
                    match same {
                        true => report.unchanged.push(name.clone()),
                        false => restart_downlinks.push((name.clone(), *paused)),
                    }
                }
            }
        }
        let added_downlinks: Vec<&str> = wanted_downlinks
            .keys()
            .filter(|n| !running_downlinks.iter().any(|(r, _, _)| r == *n))
            .copied()
            .collect();

        let downlink_endpoint =
            Endpoint::new(&new.mqtt).map_err(|e| ControlError::Failed(e.to_string()))?;
        // Drain what goes away or restarts, then swap what the routes share.
        let limit = new.shutdown_timeout;
        for name in report.removed.iter().chain(restart.iter().map(|(n, _)| n)) {
            if self.supervisor.stop(name, limit).await == Some(false) {
                report.notes.push(format!(
                    "route \"{name}\" did not finish within {limit:?}: what it held is left to the broker to redeliver"
                ));
            }
        }
        for name in removed_downlinks
            .iter()
            .chain(restart_downlinks.iter().map(|(n, _)| n))
        {
            if self.downlinks.stop(name, limit).await == Some(false) {
                report.notes.push(format!(
                    "downlink \"{name}\" did not finish within {limit:?}: its batch is left uncommitted, for the source to deliver again"
                ));
            }
        }
        report.removed.extend(removed_downlinks);
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
        let connections = Arc::new(self.connections.clone());
        let old_dead_letter = self.supervisor.update_shared(|shared| {
            shared.connections = connections.clone();
            shared.mqtt = new.mqtt.clone();
            replacement.map(|(endpoint, dead_letter)| {
                shared.endpoint = endpoint;
                std::mem::replace(&mut shared.dead_letter, dead_letter)
            })
        });
        if let Some(old) = old_dead_letter {
            self.dead_letter = self.supervisor.dead_letter();
            old.close().await;
        }
        self.downlinks.set_shared(DownlinkShared {
            endpoint: downlink_endpoint,
            mqtt: new.mqtt.clone(),
            dead_letter: self.dead_letter.clone(),
        });
        for (name, paused) in &restart_downlinks {
            let d = wanted_downlinks[name.as_str()];
            match self.downlinks.start(d, &new.connections, *paused) {
                Ok(()) => report.restarted.push(name.clone()),
                Err(e) => report.notes.push(e),
            }
        }
        for name in added_downlinks {
            match self
                .downlinks
                .start(wanted_downlinks[name], &new.connections, false)
            {
                Ok(()) => report.added.push(name.to_owned()),
                Err(e) => report.notes.push(e),
            }
        }
        for (name, paused) in &restart {
            match self.supervisor.start(wanted[name.as_str()], *paused) {
                Ok(()) => report.restarted.push(name.clone()),
                Err(e) => report.notes.push(format!("{e}")),
            }
        }
        for name in added {
            match self.supervisor.start(wanted[name], false) {
                Ok(()) => report.added.push(name.to_owned()),
                Err(e) => report.notes.push(format!("{e}")),
            }
        }
        if new.admin.listen != self.config.admin.listen {
            report
                .notes
                .push("[admin] listen changed: it takes effect when the bridge restarts".into());
        }
        *self.access.write().unwrap_or_else(|p| p.into_inner()) =
            crate::admin::Access::of(&new.admin).map_err(ControlError::Failed)?;
        let _ = self.published.send(connections);
        for old in &retired {
            old.flush(Duration::from_secs(5)).await;
        }
        std::thread::spawn(move || drop(retired));
        self.config = new;
        self.stamps = stamps;
        Ok(report)
    }
}
