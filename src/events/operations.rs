//! What operators see happen to the bridge as a whole: flows starting, pauses, reloads, the
//! connections' health and the admin API's refusals.

use metrics::{counter, gauge};
use tracing::{error, info, warn};

/// A route started: which way it carries messages (`up`: from the devices' side, MQTT, to a
/// system; `down`: a system to MQTT; `across`: a system to a system, or a broker to a broker),
/// what it reads and what it delivers to. The info gauge is the join for the route metrics,
/// which carry only `route`.
pub struct FlowStarted<'a> {
    pub route: &'a str,
    /// Each end: its kind, its connection and whether the devices are on its side.
    pub source: End<'a>,
    pub sink: End<'a>,
}

/// One end of a route.
pub struct End<'a> {
    pub kind: &'static str,
    pub connection: &'a str,
    pub faces_devices: bool,
}

impl FlowStarted<'_> {
    pub fn emit(&self) {
        let direction = match (self.source.faces_devices, self.sink.faces_devices) {
            (true, false) => "up",
            (false, true) => "down",
            _ => "across",
        };
        let (source, sink) = (self.source.kind, self.sink.kind);
        gauge!(
            "mqbridge_flow_info",
            "route" => self.route.to_owned(),
            "direction" => direction,
            "source" => source,
            "sink" => sink
        )
        .set(1.0);
        info!(
            route = self.route,
            source = format!("{source} \"{}\"", self.source.connection),
            sink = format!("{sink} \"{}\"", self.sink.connection),
            direction,
            "route started"
        );
    }
}

/// An operator paused or resumed a route.
pub struct RoutePaused<'a> {
    pub route: &'a str,
    pub paused: bool,
}

impl RoutePaused<'_> {
    pub fn emit(&self) {
        gauge!("mqbridge_route_paused", "route" => self.route.to_owned()).set(if self.paused {
            1.0
        } else {
            0.0
        });
        match self.paused {
            true => info!(
                route = self.route,
                "route paused: reading nothing more, connections kept"
            ),
            false => info!(route = self.route, "route resumed"),
        }
    }
}

/// The configuration was read again: applied, or refused with the old one kept.
pub struct Reloaded<'a> {
    pub ok: bool,
    pub detail: &'a str,
}

impl Reloaded<'_> {
    pub fn emit(&self) {
        let outcome = if self.ok { "applied" } else { "refused" };
        counter!("mqbridge_reloads_total", "outcome" => outcome).increment(1);
        match self.ok {
            true => info!(detail = self.detail, "configuration reloaded"),
            false => error!(
                detail = self.detail,
                "configuration reload refused; the running configuration stays"
            ),
        }
    }
}

pub struct ConnectionHealthy<'a> {
    pub connection: &'a str,
    pub detail: &'a str,
}

impl ConnectionHealthy<'_> {
    pub fn emit(&self) {
        gauge!("mqbridge_connection_healthy", "connection" => self.connection.to_owned()).set(1.0);
        info!(
            connection = self.connection,
            detail = self.detail,
            "connection check passed"
        );
    }
}

pub struct ConnectionUnhealthy<'a> {
    pub connection: &'a str,
    pub error: &'a str,
}

impl ConnectionUnhealthy<'_> {
    pub fn emit(&self) {
        gauge!("mqbridge_connection_healthy", "connection" => self.connection.to_owned()).set(0.0);
        error!(
            connection = self.connection,
            error = self.error,
            "connection check failed; messages wait until it recovers"
        );
    }
}

/// The admin API refused a request as a browser attack would make it: a foreign host name
/// (`host`) or a change sent from another site (`cross_site`).
pub struct AdminRefused<'a> {
    pub reason: &'static str,
    pub method: &'a str,
    pub path: &'a str,
}

impl AdminRefused<'_> {
    pub fn emit(&self) {
        counter!("mqbridge_admin_requests_refused_total", "reason" => self.reason).increment(1);
        warn!(
            reason = self.reason,
            method = self.method,
            path = self.path,
            "admin API request refused"
        );
    }
}

/// The memory budget: its total, what readers hold past their reserved shares, and how many
/// readers hold a share (each reserves 64 KiB).
pub struct BudgetLevel {
    pub total: usize,
    pub shared_used: usize,
    pub readers: usize,
}

impl BudgetLevel {
    pub fn emit(&self) {
        gauge!("mqbridge_memory_budget_bytes").set(self.total as f64);
        gauge!("mqbridge_memory_budget_shared_used_bytes").set(self.shared_used as f64);
        gauge!("mqbridge_memory_budget_readers").set(self.readers as f64);
    }
}
