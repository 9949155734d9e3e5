//! A running route as the supervisor holds it: its own stop signals, its state and counts, and
//! its task. Stopping one route stops nothing else.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::RouteConfig;
use crate::flow::{ConsumerStatus, Pause, RouteStats, StatsSnapshot};

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
    pub(super) config: RouteConfig,
    pub(super) pause: Arc<Pause>,
    pub(super) consumers: Vec<Arc<ConsumerStatus>>,
    /// The supervisor's number for this start of the route.
    pub(super) start: u64,
    pub(super) state: Arc<Mutex<RouteState>>,
    pub(super) stats: Arc<RouteStats>,
    pub(super) shutdown: CancellationToken,
    pub(super) hard_stop: CancellationToken,
    /// Cancelled when the route is stopped for good.
    pub(super) gone: CancellationToken,
    /// Its disk buffer, when it has one.
    pub(super) buffer: Option<Arc<crate::buffer::Store>>,
    /// `None` once it ended.
    pub(super) task: Option<JoinHandle<()>>,
}

impl RouteHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its disk buffer, when it has one.
    pub fn buffer(&self) -> Option<&Arc<crate::buffer::Store>> {
        self.buffer.as_ref()
    }

    pub fn state(&self) -> RouteState {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// The settings it runs with.
    pub fn config(&self) -> &RouteConfig {
        &self.config
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
