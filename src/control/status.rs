//! What `/routes`, the status page, `mqbridge status` and `/readyz` tell: each route's source
//! and sink as what they are, its state, consumers, counts, replication delay and last error,
//! and whether the bridge is ready.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::config::{RouteConfig, Spelling};
use crate::flow::{ConsumerStatus, StatsSnapshot};
use crate::message::now_ms;
use crate::route::{RouteHandle, RouteState};

#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// The `[[routes]]` entries.
    pub routes: Vec<RouteStatus>,
    /// The `[[downlinks]]` entries, in the same shape.
    pub downlinks: Vec<RouteStatus>,
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

/// What every route shows: its state, counts and last error.
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

/// A route: what it reads and what it delivers to, its consumers, and its progress.
#[derive(Debug, Clone, Serialize)]
pub struct RouteStatus {
    pub name: String,
    /// The connection it delivers to.
    pub connection: String,
    /// What it reads: `kind`, `connection` and that kind's keys (an MQTT source's `filters`,
    /// `share_group` and `consumers`; a Kafka or RocketMQ source's `topic` and `group`, and the
    /// `partitions` its member has read from).
    pub source: serde_json::Value,
    /// What it delivers to: `kind`, `connection` and that kind's keys.
    pub sink: serde_json::Value,
    pub consumers: Vec<ConsumerView>,
    /// Its disk buffer, when it has one: what it holds and how full it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffer: Option<BufferView>,
    #[serde(flatten)]
    pub progress: Progress,
}

/// What a route's disk buffer holds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BufferView {
    pub max_size: u64,
    pub bytes: u64,
    pub messages: u64,
    /// How long ago its oldest message was received, in seconds (0 when empty).
    pub oldest_age_seconds: f64,
    /// Messages found damaged and set aside, since the file was made.
    pub damaged: u64,
    pub path: String,
}

impl BufferView {
    fn of(store: &crate::buffer::Store) -> Self {
        let level = store.level();
        let oldest = store.oldest().filter(|_| level.messages > 0);
        let age = oldest.map_or(0, |at| crate::message::now_ms().saturating_sub(at));
        BufferView {
            max_size: store.max_size(),
            bytes: level.bytes,
            messages: level.messages,
            oldest_age_seconds: age as f64 / 1000.0,
            damaged: level.damaged,
            path: store.path().display().to_string(),
        }
    }
}

/// A route's state and why, by one rule whatever it reads.
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

#[derive(Debug, Clone, Serialize)]
pub struct ConsumerView {
    pub client_id: String,
    pub connected: bool,
    pub subscribed: bool,
    /// The broker's refusal of a filter, or why a group member reads nothing.
    pub refused: Option<String>,
}

impl ConsumerView {
    fn of(c: &ConsumerStatus) -> Self {
        ConsumerView {
            client_id: c.client_id(),
            connected: c.connected(),
            subscribed: c.subscribed(),
            refused: c.refused(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    pub message: String,
    /// In ms since the Unix epoch.
    pub at: u64,
}

impl RouteStatus {
    pub fn of(handle: &RouteHandle) -> Self {
        let consumers = handle.consumers();
        let mut status = Self::disabled(handle.config());
        let partitions: Vec<String> = consumers.iter().flat_map(|c| c.partitions()).collect();
        if consumers.iter().any(|c| c.is_group_member()) {
            status.source["partitions"] = partitions.into();
        }
        status.consumers = consumers.iter().map(|c| ConsumerView::of(c)).collect();
        status.buffer = handle.buffer().map(|b| BufferView::of(b));
        status.progress = Progress::of(handle);
        status
    }

    /// A route of the configuration that does not run (`enabled = false`).
    pub fn disabled(config: &RouteConfig) -> Self {
        RouteStatus {
            name: config.name.clone(),
            connection: config.connection.clone(),
            source: config.source.view(),
            sink: sink_view(config),
            consumers: Vec::new(),
            buffer: None,
            progress: Progress::disabled(),
        }
    }

    /// Whether the file spells it `[[downlinks]]`.
    pub fn is_downlink(config: &RouteConfig) -> bool {
        config.spelling == Spelling::Downlink
    }
}

/// What a route delivers to: the kind, the connection and that kind's keys.
fn sink_view(config: &RouteConfig) -> serde_json::Value {
    let mut view = serde_json::json!({"kind": config.sink.kind(), "connection": config.connection});
    if let (Some(out), serde_json::Value::Object(keys)) = (view.as_object_mut(), config.sink.view())
    {
        out.extend(keys);
    }
    view
}

/// Whether the bridge does its job: every running route reads its source (a consumer
/// connected, no subscription refused, a group member with partitions) and has a destination
/// that has not failed every send for longer than `failing_after`, and every connection a route
/// uses passed its last check.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// One line per reason it is not.
    pub reasons: Vec<String>,
}

pub fn readiness<'a>(
    routes: impl Iterator<Item = &'a RouteHandle>,
    checks: &BTreeMap<String, Result<String, String>>,
    failing_after: Duration,
) -> Readiness {
    let mut reasons = Vec::new();
    let mut used = BTreeMap::new();
    for handle in routes {
        let config = handle.config();
        let name = format!("{} \"{}\"", config.spelling.what(), config.name);
        for connection in config.connections() {
            used.insert(connection.to_owned(), name.clone());
        }
        if let Some(why) = unreadable(handle.consumers()) {
            reasons.push(format!("{name}: {why}"));
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

/// Why a route cannot read its source, if it cannot: no consumer connected, a subscription the
/// broker refused, a group member without partitions for longer than its session.
fn unreadable(consumers: &[std::sync::Arc<ConsumerStatus>]) -> Option<String> {
    if !consumers.iter().any(|c| c.connected()) {
        let why = consumers.iter().find_map(|c| c.refused());
        let why = why.map(|e| format!(": {e}")).unwrap_or_default();
        return Some(format!("no consumer connected{why}"));
    }
    let refused = consumers
        .iter()
        .filter(|c| c.connected() && !c.subscribed());
    if let Some(why) = refused.filter_map(|c| c.refused()).next() {
        return Some(format!("cannot read its source: {why}"));
    }
    let idle = consumers.iter().find_map(|c| c.unassigned_too_long());
    idle.map(|idle| {
        format!(
            "its group member has had no partition or queue for {} s, longer than its session",
            idle.as_secs()
        )
    })
}
