//! What a route's consumers show the operator, and the route's pause switch: a paused route's
//! consumers stay connected (the broker keeps queueing for the share group) but read nothing
//! more, through the same read gate that bounds their window.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// One consumer's connection, as `/routes` shows it.
#[derive(Debug)]
pub struct ConsumerStatus {
    pub client_id: String,
    connected: AtomicBool,
    subscribed: AtomicBool,
    /// Subscribed at least once since the route started.
    ever_subscribed: AtomicBool,
    /// The broker's refusal of a filter, the last one.
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

    pub(super) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Release);
        if !connected {
            self.subscribed.store(false, Ordering::Release);
        }
    }

    pub(super) fn set_subscribed(&self) {
        self.subscribed.store(true, Ordering::Release);
        self.ever_subscribed.store(true, Ordering::Release);
    }

    pub(super) fn set_refused(&self, reason: String) {
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }
}

/// A route's switch to stop reading from the broker without disconnecting.
#[derive(Debug, Default)]
pub struct Pause {
    paused: AtomicBool,
    /// The consumers' read gates, woken on resume.
    wakers: Mutex<Vec<Arc<Notify>>>,
}

impl Pause {
    pub fn new(paused: bool) -> Self {
        Pause {
            paused: AtomicBool::new(paused),
            wakers: Mutex::default(),
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    pub fn set(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
        if !paused {
            for wake in self.wakers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                wake.notify_one();
            }
        }
    }

    pub(super) fn register(&self, wake: Arc<Notify>) {
        self.wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(wake);
    }
}
