//! A running flow (a route or a downlink) as the supervisor holds it: its own stop signals, its
//! state and counts, and its task. Stopping one flow stops nothing else.

use crate::rules::RuleSpec;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::RouteConfig;
use crate::downlinks::DownlinkConfig;
use crate::flow::ConsumerStatus;
use crate::flow::{Pause, RouteStats, StatsSnapshot};

/// What a flow runs, as configured: `[[routes]]` (MQTT to any sink) or `[[downlinks]]` (Kafka
/// or RocketMQ to MQTT).
#[derive(Debug, Clone, PartialEq)]
pub enum Flow {
    Route(RouteConfig),
    Downlink(DownlinkConfig),
}

impl Flow {
    pub fn name(&self) -> &str {
        match self {
            Flow::Route(r) => &r.name,
            Flow::Downlink(d) => &d.name,
        }
    }

    /// "route" or "downlink", as the configuration says.
    pub fn what(&self) -> &'static str {
        match self {
            Flow::Route(_) => "route",
            Flow::Downlink(_) => "downlink",
        }
    }

    /// Its rules as written (`where`, `transform`, `schema`).
    pub fn rules(&self) -> RuleSpec {
        match self {
            Flow::Route(r) => r.rules(),
            Flow::Downlink(d) => d.rules(),
        }
    }

    /// The connections it reads from and delivers to.
    pub fn connections(&self) -> Vec<&str> {
        match self {
            Flow::Route(r) => {
                let source = r.source.as_ref().map(|s| s.connection.as_str());
                std::iter::once(r.connection.as_str())
                    .chain(source)
                    .collect()
            }
            Flow::Downlink(d) => vec![&d.connection],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteState {
    Running,
    /// Finishing and acknowledging what it holds; taking nothing new.
    Stopping,
    Stopped,
}

pub struct RouteHandle {
    pub(super) name: String,
    /// The settings it runs with.
    pub(super) flow: Flow,
    pub(super) pause: Arc<Pause>,
    pub(super) consumers: Vec<Arc<ConsumerStatus>>,
    /// The supervisor's number for this start of the route.
    pub(super) start: u64,
    pub(super) state: Arc<Mutex<RouteState>>,
    pub(super) stats: Arc<RouteStats>,
    pub(super) shutdown: CancellationToken,
    pub(super) hard_stop: CancellationToken,
    /// `None` once it ended.
    pub(super) task: Option<JoinHandle<()>>,
}

impl RouteHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn state(&self) -> RouteState {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    pub fn flow(&self) -> &Flow {
        &self.flow
    }

    /// Its settings when it is a route.
    pub fn route_config(&self) -> Option<&RouteConfig> {
        match &self.flow {
            Flow::Route(r) => Some(r),
            Flow::Downlink(_) => None,
        }
    }

    /// Its settings when it is a downlink.
    pub fn downlink_config(&self) -> Option<&DownlinkConfig> {
        match &self.flow {
            Flow::Downlink(d) => Some(d),
            Flow::Route(_) => None,
        }
    }

    pub fn consumers(&self) -> &[Arc<ConsumerStatus>] {
        &self.consumers
    }

    pub fn is_paused(&self) -> bool {
        self.pause.is_paused()
    }

    /// Stops (or resumes) deliveries: while paused none starts, and the consumers read
    /// nothing more, staying connected (or in their group).
    pub fn set_paused(&self, paused: bool) {
        self.pause.set(paused);
    }

    /// Asks the route to stop: take nothing new, finish and acknowledge what it holds.
    pub(super) fn begin_stop(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if *state == RouteState::Running {
            *state = RouteState::Stopping;
        }
        drop(state);
        self.shutdown.cancel();
    }

    /// Past the stop's time limit: deliveries still pending are abandoned (their messages stay
    /// unacknowledged, for the source to redeliver), so that the route can still acknowledge
    /// what finished and close its lanes.
    pub(super) fn abandon(&self) {
        self.hard_stop.cancel();
    }

    /// Waits up to `limit` for the route's task to end.
    pub(super) async fn wait(&mut self, limit: Duration) -> bool {
        let Some(task) = &mut self.task else {
            return true;
        };
        let ended = tokio::time::timeout(limit, task).await.is_ok();
        if ended {
            self.task = None;
        }
        ended
    }

    pub(super) fn abort(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        set(&self.state, RouteState::Stopped);
    }
}

pub(super) fn set(state: &Mutex<RouteState>, to: RouteState) {
    *state.lock().unwrap_or_else(|p| p.into_inner()) = to;
}
