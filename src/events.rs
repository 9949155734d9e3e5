//! Telemetry: each event the bridge reports is a type whose `emit` writes its metrics, its log
//! line and the counts the status reads (`RouteStats`, `ConsumerStatus`) together, so that the
//! three never disagree and no caller updates two of them. Counters are per route (low
//! cardinality) and emitted per batch. ERROR means data is at risk or an operator must act. The
//! consumers' own events (connections, subscriptions, windows, acks, group members and their
//! lag) are in `consumer`; the bridge's as a whole (routes started, pauses, reloads, connection
//! health, admin refusals) in `operations`.

mod buffer;
mod consumer;
mod operations;

pub use buffer::*;
pub use consumer::*;
pub use operations::*;

use std::sync::Arc;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use tracing::{error, info, warn};

use crate::flow::RouteStats;

/// A route's metric handles for the events of every batch, registered once when the route
/// starts (looking a labelled metric up per batch costs more than the rest of the event), and
/// the counts its status shows.
pub struct RouteMetrics {
    route: Arc<str>,
    stats: Arc<RouteStats>,
    part: Part,
    /// Per lane (the `consumer` label, numbered from 1).
    received: Vec<Counter>,
    received_bytes: Counter,
    delivered: Counter,
    filtered: Counter,
    delay: Histogram,
    delay_last: Gauge,
}

/// Which part of its route a pipeline runs: the whole route, or, for a route with a disk
/// buffer, the way into the buffer (which counts what the source handed over and what the
/// buffer took) or the way out (which counts what the sink took).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Whole,
    IntoBuffer,
    OutOfBuffer,
}

impl RouteMetrics {
    /// The same, for one part of the route.
    pub fn part(mut self, part: Part) -> Self {
        self.part = part;
        if part == Part::IntoBuffer {
            self.delivered =
                counter!("mqbridge_buffer_written_total", "route" => self.route.to_string());
        }
        self
    }

    /// The route's name.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// `stats` is what the route's status reads.
    pub fn new(route: &str, lanes: usize, stats: Arc<RouteStats>) -> Self {
        let label = || route.to_owned();
        // Shown from the start, at 0, so that dashboards and alerts see the route before its
        // first incident.
        for name in [
            "mqbridge_mqtt_connects_total",
            "mqbridge_mqtt_disconnects_total",
            "mqbridge_mqtt_connect_errors_total",
            "mqbridge_subscribe_errors_total",
            "mqbridge_dead_letter_errors_total",
            "mqbridge_acks_dropped_total",
            "mqbridge_contract_errors_total",
        ] {
            counter!(name, "route" => label()).increment(0);
        }
        gauge!("mqbridge_consumers_connected", "route" => label()).increment(0.0);
        gauge!("mqbridge_route_paused", "route" => label()).set(0.0);
        RouteMetrics {
            route: route.into(),
            stats,
            part: Part::Whole,
            received: (1..=lanes)
                .map(|n| {
                    let consumer = itoa::Buffer::new().format(n).to_owned();
                    counter!("mqbridge_messages_received_total", "route" => label(), "consumer" => consumer)
                })
                .collect(),
            received_bytes: counter!("mqbridge_received_bytes_total", "route" => label()),
            delivered: counter!("mqbridge_messages_delivered_total", "route" => label()),
            filtered: counter!("mqbridge_messages_filtered_total", "route" => label()),
            delay: histogram!("mqbridge_delivery_delay_seconds", "route" => label()),
            delay_last: gauge!("mqbridge_delivery_delay_last_seconds", "route" => label()),
        }
    }
}

/// Messages taken from a source's lane (for MQTT, a consumer).
pub struct BatchReceived<'a> {
    pub metrics: &'a RouteMetrics,
    pub lane: usize,
    pub count: usize,
    pub bytes: usize,
}

impl BatchReceived<'_> {
    pub fn emit(&self) {
        let m = self.metrics;
        if m.part == Part::OutOfBuffer {
            return;
        }
        if let Some(received) = m.received.get(self.lane) {
            received.increment(self.count as u64);
        }
        m.received_bytes.increment(self.bytes as u64);
        m.stats.received(self.count);
        tracing::trace!(route = &*m.route, count = self.count, "messages received");
    }
}

/// Messages a rule filtered (`where` false, or dropped by the `transform`): acknowledged, not
/// delivered.
pub struct MessagesFiltered<'a> {
    pub metrics: &'a RouteMetrics,
    pub count: usize,
}

impl MessagesFiltered<'_> {
    pub fn emit(&self) {
        let m = self.metrics;
        m.filtered.increment(self.count as u64);
        m.stats.filtered(self.count);
        tracing::trace!(route = &*m.route, count = self.count, "messages filtered");
    }
}

/// Messages the sink confirmed. `oldest_ms` is the age of the oldest message in the batch.
pub struct BatchDelivered<'a> {
    pub metrics: &'a RouteMetrics,
    pub count: usize,
    pub oldest_ms: u64,
}

impl BatchDelivered<'_> {
    pub fn emit(&self) {
        let m = self.metrics;
        m.delivered.increment(self.count as u64);
        if m.part == Part::IntoBuffer {
            tracing::trace!(route = &*m.route, count = self.count, "batch buffered");
            return;
        }
        m.delay.record(self.oldest_ms as f64 / 1000.0);
        m.delay_last.set(self.oldest_ms as f64 / 1000.0);
        m.stats.delivered(self.count, self.oldest_ms);
        tracing::trace!(route = &*m.route, count = self.count, "batch delivered");
    }
}

/// Messages acknowledged to their source (or given up at a hard stop): out of the route.
pub struct MessagesReleased<'a> {
    pub metrics: &'a RouteMetrics,
    pub count: usize,
}

impl MessagesReleased<'_> {
    pub fn emit(&self) {
        if self.metrics.part == Part::OutOfBuffer {
            return;
        }
        self.metrics.stats.released(self.count);
    }
}

/// The sink failed in a way that may pass; the messages are held and retried.
pub struct DeliveryRetry<'a> {
    pub metrics: &'a RouteMetrics,
    pub count: usize,
    pub kind: &'a str,
    pub error: &'a str,
    pub attempt: u32,
}

impl DeliveryRetry<'_> {
    pub fn emit(&self) {
        let route = &*self.metrics.route;
        counter!("mqbridge_delivery_retries_total", "route" => route.to_owned(), "error" => self.kind.to_owned())
            .increment(self.count as u64);
        self.metrics.stats.retried(self.count, self.error);
        warn!(
            route,
            count = self.count,
            attempt = self.attempt,
            error = self.error,
            "delivery failed; retrying"
        );
    }
}

/// A sink gave a different number of outcomes than it was given messages: a bug in the sink.
/// The messages without an outcome are retried, never taken as delivered.
pub struct SinkOutcomesMismatch<'a> {
    pub route: &'a str,
    pub expected: usize,
    pub got: usize,
}

impl SinkOutcomesMismatch<'_> {
    pub fn emit(&self) {
        counter!("mqbridge_contract_errors_total", "route" => self.route.to_owned()).increment(1);
        error!(
            route = self.route,
            expected = self.expected,
            got = self.got,
            "the sink returned the wrong number of outcomes; the messages without one are retried"
        );
    }
}

/// A source handed over a message on a lane its route does not have: a bug in the source. The
/// message is left unacknowledged, for the broker to redeliver.
pub struct UnknownLane<'a> {
    pub route: &'a str,
    pub lane: usize,
}

impl UnknownLane<'_> {
    pub fn emit(&self) {
        counter!("mqbridge_contract_errors_total", "route" => self.route.to_owned()).increment(1);
        error!(
            route = self.route,
            lane = self.lane,
            "a message arrived on an unknown lane; left unacknowledged"
        );
    }
}

/// Messages the bridge itself published (they carry its origin marker), taken and
/// acknowledged without delivering them, so that opposite routes cannot echo them.
pub struct LoopSkipped<'a> {
    pub route: &'a str,
    pub count: usize,
    pub marker: &'a str,
}

impl LoopSkipped<'_> {
    pub fn emit(&self) {
        counter!("mqbridge_messages_skipped_total", "route" => self.route.to_owned(), "reason" => "origin")
            .increment(self.count as u64);
        tracing::debug!(
            route = self.route,
            count = self.count,
            marker = self.marker,
            "skipped messages the bridge published itself"
        );
    }
}

/// A function (`http`, `exec`, `scf`) was invoked with a batch's event.
pub struct FunctionInvoked<'a> {
    pub route: &'a str,
    pub ok: bool,
    pub elapsed: std::time::Duration,
}

impl FunctionInvoked<'_> {
    pub fn emit(&self) {
        let outcome = if self.ok { "ok" } else { "failed" };
        counter!("mqbridge_function_invocations_total", "route" => self.route.to_owned(), "outcome" => outcome)
            .increment(1);
        histogram!("mqbridge_function_duration_seconds", "route" => self.route.to_owned())
            .record(self.elapsed.as_secs_f64());
    }
}

/// A local function (`exec`) ran: what it printed goes to the log, at WARN when it failed.
pub struct FunctionOutput<'a> {
    pub route: &'a str,
    pub program: &'a str,
    pub output: &'a str,
    pub failed: bool,
}

impl FunctionOutput<'_> {
    /// One log line per line of output.
    pub fn emit(&self) {
        for line in self.output.lines().filter(|l| !l.trim().is_empty()) {
            match self.failed {
                true => warn!(
                    route = self.route,
                    program = self.program,
                    output = line,
                    "the function failed"
                ),
                false => info!(
                    route = self.route,
                    program = self.program,
                    output = line,
                    "the function's output"
                ),
            }
        }
        if self.failed && self.output.trim().is_empty() {
            warn!(
                route = self.route,
                program = self.program,
                "the function failed"
            );
        }
    }
}

/// The destination refuses the bridge's settings (credentials, permissions, a function that
/// does not exist): an operator must act. The messages are held and retried slowly.
pub struct ConfigurationRefused<'a> {
    pub route: &'a str,
    pub kind: &'a str,
    pub error: &'a str,
    pub retry_in: std::time::Duration,
}

impl ConfigurationRefused<'_> {
    pub fn emit(&self) {
        counter!("mqbridge_configuration_errors_total", "route" => self.route.to_owned(), "error" => self.kind.to_owned())
            .increment(1);
        error!(
            route = self.route,
            error = self.error,
            retry_in = ?self.retry_in,
            "the destination refuses the bridge's settings; messages are held until they are mended"
        );
    }
}

/// Messages a sink refused for good, now written to the dead-letter destination.
pub struct DeadLettered<'a> {
    pub metrics: &'a RouteMetrics,
    pub count: usize,
    pub kind: &'a str,
    pub error: &'a str,
}

impl DeadLettered<'_> {
    pub fn emit(&self) {
        let route = &*self.metrics.route;
        counter!("mqbridge_messages_failed_total", "route" => route.to_owned(), "error" => self.kind.to_owned())
            .increment(self.count as u64);
        self.metrics.stats.dead_lettered(self.count, self.error);
        warn!(
            route,
            count = self.count,
            error = self.error,
            "messages sent to the dead-letter destination"
        );
    }
}

/// The dead-letter destination itself failed: messages are held (not acknowledged) and retried.
pub struct DeadLetterFailed<'a> {
    pub route: &'a str,
    pub count: usize,
    pub error: &'a str,
}

impl DeadLetterFailed<'_> {
    pub fn emit(&self) {
        counter!("mqbridge_dead_letter_errors_total", "route" => self.route.to_owned())
            .increment(self.count as u64);
        error!(
            route = self.route,
            count = self.count,
            error = self.error,
            "dead-letter write failed; messages held and retried"
        );
    }
}

/// A producer hit a fatal error and was replaced by a new one.
pub struct ProducerReplaced<'a> {
    pub connection: &'a str,
    pub reason: &'a str,
}

impl ProducerReplaced<'_> {
    pub fn emit(&self) {
        counter!("mqbridge_producer_replacements_total", "connection" => self.connection.to_owned()).increment(1);
        error!(
            connection = self.connection,
            reason = self.reason,
            "Kafka producer failed for good; replaced by a new one"
        );
    }
}
