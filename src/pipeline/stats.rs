//! A route's running counts, kept beside its metrics so that the route's handle can tell them
//! without scraping `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct RouteStats {
    received: AtomicU64,
    delivered: AtomicU64,
    dead_lettered: AtomicU64,
    retried: AtomicU64,
    /// Messages whose ack (or give-up) went back to the source.
    released: AtomicU64,
}

/// The counts at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub received: u64,
    pub delivered: u64,
    pub dead_lettered: u64,
    pub retried: u64,
    /// Received and not yet acknowledged (or given up).
    pub in_flight: u64,
}

impl RouteStats {
    pub fn received(&self, n: usize) {
        self.received.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub fn delivered(&self, n: usize) {
        self.delivered.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub fn dead_lettered(&self, n: usize) {
        self.dead_lettered.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub fn retried(&self, n: usize) {
        self.retried.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub fn released(&self, n: usize) {
        self.released.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let received = self.received.load(Ordering::Relaxed);
        StatsSnapshot {
            received,
            delivered: self.delivered.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            in_flight: received.saturating_sub(self.released.load(Ordering::Relaxed)),
        }
    }
}
