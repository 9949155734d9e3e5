//! A route's running counts and health, kept beside its metrics so that the route's handle can
//! tell them (`/routes`, readiness) without scraping `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::message::now_ms;

#[derive(Debug, Default)]
pub struct RouteStats {
    received: AtomicU64,
    delivered: AtomicU64,
    dead_lettered: AtomicU64,
    retried: AtomicU64,
    filtered: AtomicU64,
    /// Messages whose ack (or give-up) went back to the source.
    released: AtomicU64,
    /// Age of the oldest message of the last delivered batch, in ms (the replication delay).
    delay_ms: AtomicU64,
    /// When the last delivery happened, in ms since the epoch (0: never).
    last_delivery_ms: AtomicU64,
    health: Mutex<Health>,
}

#[derive(Debug, Default, Clone)]
struct Health {
    /// Since when every send has failed (cleared by a delivery).
    failing_since_ms: Option<u64>,
    last_error: Option<(String, u64)>,
}

/// The counts and health at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub received: u64,
    pub delivered: u64,
    pub dead_lettered: u64,
    pub retried: u64,
    /// Acknowledged without delivery: a rule filtered them.
    pub filtered: u64,
    /// Received and not yet acknowledged (or given up).
    pub in_flight: u64,
    pub delay_ms: u64,
    pub last_delivery_ms: Option<u64>,
    /// Since when the sink has failed every send, in ms since the epoch.
    pub failing_since_ms: Option<u64>,
    /// The last failure (a retried send or a dead letter) and when, in ms since the epoch.
    pub last_error: Option<(String, u64)>,
}

impl RouteStats {
    pub fn received(&self, n: usize) {
        self.received.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `n` messages delivered, the oldest `oldest_ms` old: the sink works.
    pub fn delivered(&self, n: usize, oldest_ms: u64) {
        self.delivered.fetch_add(n as u64, Ordering::Relaxed);
        self.delay_ms.store(oldest_ms, Ordering::Relaxed);
        self.last_delivery_ms.store(now_ms(), Ordering::Relaxed);
        self.health().failing_since_ms = None;
    }

    pub fn dead_lettered(&self, n: usize, error: &str) {
        self.dead_lettered.fetch_add(n as u64, Ordering::Relaxed);
        self.health().last_error = Some((error.to_owned(), now_ms()));
    }

    /// A send failed and `n` messages will be retried.
    pub fn retried(&self, n: usize, error: &str) {
        self.retried.fetch_add(n as u64, Ordering::Relaxed);
        let now = now_ms();
        let mut health = self.health();
        health.failing_since_ms.get_or_insert(now);
        health.last_error = Some((error.to_owned(), now));
    }

    pub fn filtered(&self, n: usize) {
        self.filtered.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn released(&self, n: usize) {
        self.released.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let received = self.received.load(Ordering::Relaxed);
        let health = self.health().clone();
        let last_delivery_ms = self.last_delivery_ms.load(Ordering::Relaxed);
        StatsSnapshot {
            received,
            delivered: self.delivered.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            filtered: self.filtered.load(Ordering::Relaxed),
            in_flight: received.saturating_sub(self.released.load(Ordering::Relaxed)),
            delay_ms: self.delay_ms.load(Ordering::Relaxed),
            last_delivery_ms: (last_delivery_ms > 0).then_some(last_delivery_ms),
            failing_since_ms: health.failing_since_ms,
            last_error: health.last_error,
        }
    }
}
