//! What `/routes`, the status page, `mqbridge status` and `/readyz` tell: each route's state,
//! consumers, counts, replication delay and last error, and whether the bridge is ready.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::config::{RouteConfig, RouteSource};
use crate::downlinks::DownlinkConfig;
use crate::flow::StatsSnapshot;
use crate::message::now_ms;
use crate::route::{RouteHandle, RouteState};

#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub routes: Vec<RouteStatus>,
    pub downlinks: Vec<DownlinkStatus>,
    /// The last reload, when there was one.
    pub last_reload: Option<ReloadOutcome>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReloadOutcome {
    /// When, in ms since the Unix epoch.
    pub at: u64,
    pub ok: bool,
    /// What changed, or why nothing did.
    pub detail: String,
}

/// What every flow shows, route or downlink: its state, counts and last error.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// `starting`, `running`, `paused`, `failing`, `stopping` or `stopped`.
    pub state: &'static str,
    /// Why `failing` or `starting`, when it is.
    pub reason: Option<String>,
    pub enabled: bool,
    pub received: u64,
    /// Delivered to the sink (for a downlink: acknowledged by the MQTT broker).
    pub delivered: u64,
    pub dead_lettered: u64,
    pub retried: u64,
    /// Acknowledged without delivery: a rule (`where`, `transform`) filtered them.
    pub filtered: u64,
    pub in_flight: u64,
    /// Age of the oldest message of the last delivered batch, in seconds.
    pub delay_seconds: f64,
    /// When the last delivery happened, in ms since the Unix epoch.
    pub last_delivery: Option<u64>,
    pub last_error: Option<LastError>,
}

impl Progress {
    fn of(handle: &RouteHandle) -> Self {
        let stats = handle.stats();
        let (state, reason) = condition(handle, &stats);
        Progress {
            state,
            reason,
            enabled: true,
            received: stats.received,
            delivered: stats.delivered,
            dead_lettered: stats.dead_lettered,
            retried: stats.retried,
            filtered: stats.filtered,
            in_flight: stats.in_flight,
            delay_seconds: stats.delay_ms as f64 / 1000.0,
            last_delivery: stats.last_delivery_ms,
            last_error: stats
                .last_error
                .map(|(message, at)| LastError { message, at }),
        }
    }

    /// A flow of the configuration that does not run (`enabled = false`).
    fn disabled() -> Self {
        Progress {
            state: "stopped",
            reason: Some("enabled = false".into()),
            enabled: false,
            received: 0,
            delivered: 0,
            dead_lettered: 0,
            retried: 0,
            filtered: 0,
            in_flight: 0,
            delay_seconds: 0.0,
            last_delivery: None,
            last_error: None,
        }
    }
}

/// A route: what it reads and where from, its consumers, and its progress.
#[derive(Debug, Clone, Serialize)]
pub struct RouteStatus {
    pub name: String,
    pub connection: String,
    pub filters: Vec<String>,
    /// The Kafka or RocketMQ topic it reads instead of the MQTT broker, when it does.
    pub source: Option<RouteSource>,
    pub share_group: String,
    pub consumers: Vec<ConsumerView>,
    #[serde(flatten)]
    pub progress: Progress,
}

/// A downlink: what it reads and the MQTT topic it publishes to, and its progress.
#[derive(Debug, Clone, Serialize)]
pub struct DownlinkStatus {
    pub name: String,
    pub connection: String,
    pub topic: String,
    pub group: String,
    pub mqtt_topic: String,
    #[serde(flatten)]
    pub progress: Progress,
}

impl DownlinkStatus {
    pub fn of(handle: &RouteHandle, config: &DownlinkConfig) -> Self {
        DownlinkStatus {
            progress: Progress::of(handle),
            ..Self::disabled(config)
        }
    }

    pub fn disabled(config: &DownlinkConfig) -> Self {
        DownlinkStatus {
            name: config.name.clone(),
            connection: config.connection.clone(),
            topic: config.topic.clone(),
            group: config.group(),
            mqtt_topic: config.mqtt_topic.text().to_owned(),
            progress: Progress::disabled(),
        }
    }
}

/// A flow's state and why, by one rule for routes and downlinks.
fn condition(handle: &RouteHandle, stats: &StatsSnapshot) -> (&'static str, Option<String>) {
    let consumers = handle.consumers();
    let started = consumers.iter().all(|c| c.ever_subscribed());
    let down = consumers.iter().filter(|c| !c.connected()).count();
    match handle.state() {
        RouteState::Stopping => ("stopping", None),
        RouteState::Stopped => ("stopped", None),
        RouteState::Running if handle.is_paused() => ("paused", None),
        RouteState::Running if !started => {
            let refused = consumers.iter().find_map(|c| c.refused());
            let reason = refused
                .unwrap_or_else(|| "waiting for every consumer to connect and subscribe".into());
            ("starting", Some(reason))
        }
        RouteState::Running if down > 0 => {
            let why = consumers
                .iter()
                .filter(|c| !c.connected())
                .find_map(|c| c.refused());
            let why = why.map(|e| format!(": {e}")).unwrap_or_default();
            let count = consumers.len();
            (
                "failing",
                Some(format!("{down} of {count} consumers disconnected{why}")),
            )
        }
        RouteState::Running => match stats.failing_since_ms {
            Some(since) => (
                "failing",
                Some(format!(
                    "every send has failed for {:.0} s",
                    now_ms().saturating_sub(since) as f64 / 1000.0
                )),
            ),
            None => ("running", None),
        },
    }
}

/// What pausing or resuming answers: the route's or the downlink's status.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Paused {
    Route(RouteStatus),
    Downlink(DownlinkStatus),
}

#[derive(Debug, Clone, Serialize)]
pub struct ConsumerView {
    pub client_id: String,
    pub connected: bool,
    pub subscribed: bool,
    /// The broker's refusal of a filter, or why a group member reads nothing.
    pub refused: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    pub message: String,
    /// In ms since the Unix epoch.
    pub at: u64,
}

impl RouteStatus {
    pub fn of(handle: &RouteHandle, config: &RouteConfig) -> Self {
        let consumers = handle.consumers().iter().map(|c| ConsumerView {
            client_id: c.client_id.clone(),
            connected: c.connected(),
            subscribed: c.subscribed(),
            refused: c.refused(),
        });
        RouteStatus {
            consumers: consumers.collect(),
            progress: Progress::of(handle),
            ..Self::disabled(config)
        }
    }

    /// A route of the configuration that does not run (`enabled = false`).
    pub fn disabled(config: &RouteConfig) -> Self {
        RouteStatus {
            name: config.name.clone(),
            connection: config.connection.clone(),
            filters: config.filters.clone(),
            source: config.source.clone(),
            share_group: config.share_group().to_owned(),
            consumers: Vec::new(),
            progress: Progress::disabled(),
        }
    }
}

/// Whether the bridge does its job: every running route has a consumer connected and a
/// destination that has not failed every send for longer than `failing_after`, and every
/// connection a route uses passed its last check.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// One line per reason it is not.
    pub reasons: Vec<String>,
}

pub fn readiness<'a>(
    flows: impl Iterator<Item = &'a RouteHandle>,
    checks: &BTreeMap<String, Result<String, String>>,
    failing_after: Duration,
) -> Readiness {
    let mut reasons = Vec::new();
    let mut used = BTreeMap::new();
    for handle in flows {
        let name = format!("{} \"{}\"", handle.flow().what(), handle.name());
        for connection in handle.flow().connections() {
            used.insert(connection.to_owned(), name.clone());
        }
        if !handle.consumers().iter().any(|c| c.connected()) {
            let why = handle.consumers().iter().find_map(|c| c.refused());
            let why = why.map(|e| format!(": {e}")).unwrap_or_default();
            reasons.push(format!("{name}: no consumer connected{why}"));
        }
        let stats = handle.stats();
        if let Some(since) = stats.failing_since_ms {
            let failing = Duration::from_millis(now_ms().saturating_sub(since));
            if failing > failing_after {
                let error = stats.last_error.map(|(e, _)| e).unwrap_or_default();
                reasons.push(format!(
                    "{name}: every send has failed for {} s: {error}",
                    failing.as_secs()
                ));
            }
        }
    }
    for (connection, route) in used {
        if let Some(Err(e)) = checks.get(&connection) {
            reasons.push(format!(
                "connection \"{connection}\" ({route}): check failed: {e}"
            ));
        }
    }
    Readiness {
        ready: reasons.is_empty(),
        reasons,
    }
}
