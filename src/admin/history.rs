//! What the status page's charts draw: the admin listener keeps each route's and downlink's
//! received and delivered totals every ten seconds for the last ten minutes (`GET /history`),
//! so that a page opened now shows them at once instead of starting from nothing.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::control::{ControlHandle, Overview};
use crate::message::now_ms;

const EVERY: Duration = Duration::from_secs(10);
/// Ten minutes of intervals, and the sample that opens the first.
const KEEP: usize = 61;

/// A flow's totals at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// ms since the Unix epoch.
    pub at: u64,
    pub received: u64,
    /// Delivered by a route, published by a downlink.
    pub delivered: u64,
}

#[derive(Debug, Serialize)]
pub struct HistoryView {
    pub every_seconds: u64,
    /// By route or downlink name, oldest first.
    pub flows: BTreeMap<String, Vec<Sample>>,
}

#[derive(Default)]
pub struct History {
    flows: Mutex<BTreeMap<String, VecDeque<Sample>>>,
}

impl History {
    /// Adds a sample of each flow (name, received, delivered), taken `at`; flows no longer
    /// there are dropped.
    pub fn record<'a>(&self, at: u64, totals: impl IntoIterator<Item = (&'a str, u64, u64)>) {
        let now: BTreeMap<&str, (u64, u64)> = totals
            .into_iter()
            .map(|(name, received, delivered)| (name, (received, delivered)))
            .collect();
        let mut flows = self.flows.lock().unwrap_or_else(|p| p.into_inner());
        flows.retain(|name, _| now.contains_key(name.as_str()));
        for (name, (received, delivered)) in now {
            let samples = flows.entry(name.to_owned()).or_default();
            samples.push_back(Sample {
                at,
                received,
                delivered,
            });
            while samples.len() > KEEP {
                samples.pop_front();
            }
        }
    }

    pub fn view(&self) -> HistoryView {
        let flows = self.flows.lock().unwrap_or_else(|p| p.into_inner());
        HistoryView {
            every_seconds: EVERY.as_secs(),
            flows: flows
                .iter()
                .map(|(name, samples)| (name.clone(), samples.iter().copied().collect()))
                .collect(),
        }
    }
}

/// Each route's and downlink's name, received and delivered (published) totals.
fn totals(overview: &Overview) -> impl Iterator<Item = (&str, u64, u64)> {
    let routes = overview.routes.iter();
    let downlinks = overview.downlinks.iter();
    routes
        .map(|r| (r.name.as_str(), r.progress.received, r.progress.delivered))
        .chain(downlinks.map(|d| (d.name.as_str(), d.progress.received, d.progress.delivered)))
}

/// Samples the bridge's flows every ten seconds, the first at once, until `shutdown`.
pub async fn sample(history: Arc<History>, control: ControlHandle, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if let Ok(overview) = control.overview().await {
            history.record(now_ms(), totals(&overview));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_ten_minutes_of_each_flow_and_forgets_removed_ones() {
        let history = History::default();
        for i in 0..100u64 {
            history.record(i * 10_000, [("a", i, i), ("b", 2 * i, 2 * i)]);
        }
        let view = history.view();
        assert_eq!(view.flows["a"].len(), KEEP);
        assert_eq!(view.flows["a"][0].at, (100 - KEEP as u64) * 10_000);
        assert_eq!(view.flows["b"].last().unwrap().delivered, 198);
        history.record(1_000_000, [("b", 200, 200)]);
        let view = history.view();
        assert!(!view.flows.contains_key("a"));
        assert_eq!(view.flows["b"].len(), KEEP);
    }
}
