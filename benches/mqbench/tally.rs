//! Counting at the sink: which messages arrived (unique and repeated), when the first was sent
//! and the last arrived, each message's end-to-end latency, and per group (a route in the width
//! runs, where message `seq` goes to route `seq % groups`) how many arrived and when the last did.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::payload;

pub struct Tally {
    seen: Vec<bool>,
    unique: u64,
    duplicates: u64,
    foreign: u64,
    first_send_ns: u64,
    first_arrival_ns: u64,
    last_arrival_ns: u64,
    latencies_us: Vec<u32>,
    group_counts: Vec<u64>,
    group_last_ns: Vec<u64>,
}

/// What a sink saw, in the form the report and the ceiling subscriber's output use.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub expected: u64,
    pub unique: u64,
    pub duplicates: u64,
    /// Messages whose payload the publisher did not write.
    pub foreign: u64,
    pub first_send_ns: u64,
    /// When the first message arrived: a drain's rate is also told from here, without the
    /// bridge's start and its joining the consumer group.
    #[serde(default)]
    pub first_arrival_ns: u64,
    pub last_arrival_ns: u64,
    pub p50_us: u32,
    pub p99_us: u32,
    pub max_us: u32,
    /// Per group: messages per second from the first send to the group's last arrival.
    pub group_rates: Vec<f64>,
}

impl Tally {
    pub fn new(expected: u64, groups: usize) -> Self {
        Tally {
            seen: vec![false; expected as usize],
            unique: 0,
            duplicates: 0,
            foreign: 0,
            first_send_ns: u64::MAX,
            first_arrival_ns: u64::MAX,
            last_arrival_ns: 0,
            latencies_us: Vec::with_capacity(expected as usize),
            group_counts: vec![0; groups.max(1)],
            group_last_ns: vec![0; groups.max(1)],
        }
    }

    pub fn record(&mut self, payload: &[u8], arrival_ns: u64) {
        let Some((seq, send_ns)) = payload::decode(payload) else {
            self.foreign += 1;
            return;
        };
        let Some(slot) = self.seen.get_mut(seq as usize) else {
            self.foreign += 1;
            return;
        };
        if std::mem::replace(slot, true) {
            self.duplicates += 1;
            return;
        }
        self.unique += 1;
        self.first_send_ns = self.first_send_ns.min(send_ns);
        self.first_arrival_ns = self.first_arrival_ns.min(arrival_ns);
        self.last_arrival_ns = self.last_arrival_ns.max(arrival_ns);
        let latency_us = arrival_ns.saturating_sub(send_ns) / 1_000;
        self.latencies_us
            .push(latency_us.min(u32::MAX as u64) as u32);
        let group = seq as usize % self.group_counts.len();
        self.group_counts[group] += 1;
        self.group_last_ns[group] = self.group_last_ns[group].max(arrival_ns);
    }

    pub fn complete(&self) -> bool {
        self.unique == self.seen.len() as u64
    }

    pub fn unique(&self) -> u64 {
        self.unique
    }

    pub fn summary(mut self) -> Summary {
        self.latencies_us.sort_unstable();
        let pct = |p: f64| -> u32 {
            let n = self.latencies_us.len();
            match n {
                0 => 0,
                _ => self.latencies_us[((n - 1) as f64 * p).round() as usize],
            }
        };
        let first = self.first_send_ns;
        let group_rates = self
            .group_counts
            .iter()
            .zip(&self.group_last_ns)
            .map(|(&n, &last)| n as f64 / (last.saturating_sub(first).max(1) as f64 / 1e9))
            .collect();
        Summary {
            expected: self.seen.len() as u64,
            unique: self.unique,
            duplicates: self.duplicates,
            foreign: self.foreign,
            first_send_ns: self.first_send_ns,
            first_arrival_ns: self.first_arrival_ns,
            last_arrival_ns: self.last_arrival_ns,
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            max_us: pct(1.0),
            group_rates,
        }
    }
}

impl Summary {
    pub fn complete(&self) -> bool {
        self.unique == self.expected
    }

    /// Messages per second end to end: first send to last arrival.
    pub fn rate(&self) -> f64 {
        let span = self
            .last_arrival_ns
            .saturating_sub(self.first_send_ns)
            .max(1);
        self.unique as f64 / (span as f64 / 1e9)
    }

    /// Messages per second from the first arrival to the last: the rate once flowing.
    pub fn flowing_rate(&self) -> f64 {
        let span = self
            .last_arrival_ns
            .saturating_sub(self.first_arrival_ns)
            .max(1);
        self.unique.saturating_sub(1) as f64 / (span as f64 / 1e9)
    }

    /// From the first send (a drain: the bridge's start) to the first arrival.
    pub fn first_arrival(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.first_arrival_ns.saturating_sub(self.first_send_ns))
    }
}

/// Says when to stop waiting for a sink: after `stall` without a new unique message.
pub struct StallClock {
    stall: Duration,
    last: u64,
    at: Instant,
}

impl StallClock {
    pub fn new(stall: Duration) -> Self {
        StallClock {
            stall,
            last: 0,
            at: Instant::now(),
        }
    }

    pub fn stalled(&mut self, unique: u64) -> bool {
        if unique != self.last {
            (self.last, self.at) = (unique, Instant::now());
        }
        self.at.elapsed() > self.stall
    }
}
