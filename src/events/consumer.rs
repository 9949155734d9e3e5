//! The MQTT consumers' events: connections, subscriptions and acks.

use metrics::{counter, gauge};
use tracing::{error, info, warn};

/// Acks dropped because the connection changed since the messages arrived; the broker
/// redelivers them.
pub struct StaleAcks<'a> {
    pub route: &'a str,
    pub count: usize,
}

impl StaleAcks<'_> {
    pub fn emit(&self) {
        counter!("mqbridge_acks_dropped_total", "route" => self.route.to_owned())
            .increment(self.count as u64);
        info!(
            route = self.route,
            count = self.count,
            "connection changed before the ack; the broker will redeliver"
        );
    }
}

pub struct AckFailed<'a> {
    pub route: &'a str,
    pub error: &'a str,
}

impl AckFailed<'_> {
    pub fn emit(&self) {
        counter!("mqbridge_acks_dropped_total", "route" => self.route.to_owned()).increment(1);
        warn!(
            route = self.route,
            error = self.error,
            "could not queue an ack; the broker will redeliver"
        );
    }
}

pub struct ConsumerConnected<'a> {
    pub route: &'a str,
    pub client_id: &'a str,
    pub session_present: bool,
    pub epoch: u64,
}

impl ConsumerConnected<'_> {
    pub fn emit(&self) {
        counter!("mqbridge_mqtt_connects_total", "route" => self.route.to_owned()).increment(1);
        gauge!("mqbridge_consumers_connected", "route" => self.route.to_owned()).increment(1.0);
        info!(
            route = self.route,
            client_id = self.client_id,
            session_present = self.session_present,
            epoch = self.epoch,
            "consumer connected"
        );
    }
}

pub struct ConsumerDisconnected<'a> {
    pub route: &'a str,
    pub client_id: &'a str,
    pub error: &'a str,
}

impl ConsumerDisconnected<'_> {
    pub fn emit(&self) {
        counter!("mqbridge_mqtt_disconnects_total", "route" => self.route.to_owned()).increment(1);
        gauge!("mqbridge_consumers_connected", "route" => self.route.to_owned()).decrement(1.0);
        warn!(
            route = self.route,
            client_id = self.client_id,
            error = self.error,
            "consumer disconnected; reconnecting"
        );
    }
}

/// A consumer could not connect (or the broker refused it); it keeps trying with backoff.
pub struct ConnectFailed<'a> {
    pub route: &'a str,
    pub client_id: &'a str,
    pub error: &'a str,
}

impl ConnectFailed<'_> {
    pub fn emit(&self) {
        counter!("mqbridge_mqtt_connect_errors_total", "route" => self.route.to_owned())
            .increment(1);
        warn!(
            route = self.route,
            client_id = self.client_id,
            error = self.error,
            "cannot connect to the broker; retrying"
        );
    }
}

pub struct Subscribed<'a> {
    pub route: &'a str,
    pub client_id: &'a str,
    pub filter: &'a str,
}

impl Subscribed<'_> {
    pub fn emit(&self) {
        info!(
            route = self.route,
            client_id = self.client_id,
            filter = self.filter,
            "subscribed"
        );
    }
}

pub struct SubscribeFailed<'a> {
    pub route: &'a str,
    pub client_id: &'a str,
    pub error: &'a str,
}

impl SubscribeFailed<'_> {
    pub fn emit(&self) {
        counter!("mqbridge_subscribe_errors_total", "route" => self.route.to_owned()).increment(1);
        error!(
            route = self.route,
            client_id = self.client_id,
            error = self.error,
            "subscription failed"
        );
    }
}
