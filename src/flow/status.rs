//! What a route's consumers show the operator: an MQTT consumer's connection and subscription,
//! or a Kafka or RocketMQ consumer group member's start. (A paused route's consumers stay
//! connected, the broker keeps queueing for the share group, but they read nothing more.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// One consumer's connection, as `/routes` shows it.
#[derive(Debug)]
pub struct ConsumerStatus {
    pub client_id: String,
    connected: AtomicBool,
    subscribed: AtomicBool,
    /// Subscribed at least once since the route started.
    ever_subscribed: AtomicBool,
    /// The broker's refusal of a filter, or why a group member cannot start: the last one.
    refused: Mutex<Option<String>>,
}

impl ConsumerStatus {
    pub fn new(client_id: String) -> Self {
        ConsumerStatus {
            client_id,
            connected: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            ever_subscribed: AtomicBool::new(false),
            refused: Mutex::new(None),
        }
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Connected, and the broker granted a subscription on this connection.
    pub fn subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    pub fn ever_subscribed(&self) -> bool {
        self.ever_subscribed.load(Ordering::Acquire)
    }

    pub fn refused(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Release);
        if !connected {
            self.subscribed.store(false, Ordering::Release);
        }
    }

    pub(crate) fn set_subscribed(&self) {
        self.subscribed.store(true, Ordering::Release);
        self.ever_subscribed.store(true, Ordering::Release);
    }

    pub(crate) fn set_refused(&self, reason: String) {
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    /// A group member's health: with a reason (the client's last error), it counts as
    /// disconnected and says why; without, connected again.
    pub(crate) fn set_trouble(&self, trouble: Option<String>) {
        self.set_connected(trouble.is_none());
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = trouble;
    }
}
