//! What a route's consumers show the operator: an MQTT consumer's connection and subscription,
//! or a Kafka or RocketMQ consumer-group member's start, the partitions it has read from and
//! since when it has none. (A paused route's consumers stay connected, the broker keeps queueing
//! for the share group, but they read nothing more.) The events of `events/` set it; status and
//! readiness read it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One consumer's connection, as `/routes` shows it.
#[derive(Debug)]
pub struct ConsumerStatus {
    /// The client's id (a group member: its group); set again when a route's consumers move
    /// from a shared connection to connections of their own.
    client_id: Mutex<String>,
    connected: AtomicBool,
    subscribed: AtomicBool,
    /// Subscribed at least once since the route started.
    ever_subscribed: AtomicBool,
    /// The broker's refusal of a filter, or why a group member cannot start: the last one.
    refused: Mutex<Option<String>>,
    /// A group member's: the partitions (or queues) it has read from, and since when it has
    /// had none assigned, with how long that may last (its session).
    member: Option<Mutex<Member>>,
}

#[derive(Debug, Default)]
struct Member {
    partitions: Vec<String>,
    unassigned: Option<(Instant, Duration)>,
}

impl ConsumerStatus {
    /// An MQTT consumer.
    pub fn new(client_id: String) -> Self {
        ConsumerStatus {
            client_id: Mutex::new(client_id),
            connected: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            ever_subscribed: AtomicBool::new(false),
            refused: Mutex::new(None),
            member: None,
        }
    }

    /// A consumer-group member, named by its group.
    pub fn group_member(group: String) -> Self {
        ConsumerStatus {
            member: Some(Mutex::default()),
            ..Self::new(group)
        }
    }

    pub fn client_id(&self) -> String {
        lock(&self.client_id).clone()
    }

    pub(crate) fn set_client_id(&self, id: String) {
        *lock(&self.client_id) = id;
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Connected, and the broker granted every subscription on this connection (a group
    /// member: it started).
    pub fn subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    pub fn ever_subscribed(&self) -> bool {
        self.ever_subscribed.load(Ordering::Acquire)
    }

    pub fn refused(&self) -> Option<String> {
        lock(&self.refused).clone()
    }

    pub fn is_group_member(&self) -> bool {
        self.member.is_some()
    }

    /// The partitions (`3`, or a RocketMQ queue's `broker-a:3`) a group member has read from.
    pub fn partitions(&self) -> Vec<String> {
        self.member
            .as_ref()
            .map(|m| lock(m).partitions.clone())
            .unwrap_or_default()
    }

    /// How long a group member has had no partition assigned, once that is longer than its
    /// session.
    pub fn unassigned_too_long(&self) -> Option<Duration> {
        let member = lock(self.member.as_ref()?);
        let (since, session) = member.unassigned?;
        Some(since.elapsed()).filter(|idle| *idle > session)
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Release);
        if !connected {
            self.subscribed.store(false, Ordering::Release);
        }
    }

    /// Every subscription granted (a group member: it started): a refusal before is over.
    pub(crate) fn set_subscribed(&self) {
        self.subscribed.store(true, Ordering::Release);
        self.ever_subscribed.store(true, Ordering::Release);
        *lock(&self.refused) = None;
    }

    pub(crate) fn set_refused(&self, reason: String) {
        self.subscribed.store(false, Ordering::Release);
        *lock(&self.refused) = Some(reason);
    }

    /// A group member's health: with a reason (the client's last error), it counts as
    /// disconnected and says why; without, connected again.
    pub(crate) fn set_trouble(&self, trouble: Option<String>) {
        self.set_connected(trouble.is_none());
        if trouble.is_none() && self.ever_subscribed() {
            self.subscribed.store(true, Ordering::Release);
        }
        *lock(&self.refused) = trouble;
    }

    /// A group member read from `partition` for the first time in this run.
    pub(crate) fn add_partition(&self, partition: String) {
        if let Some(member) = &self.member {
            lock(member).partitions.push(partition);
        }
    }

    /// Whether a group member has partitions assigned now; `session`: how long it may have
    /// none before readiness counts it as not reading. True when that changed.
    pub(crate) fn set_assigned(&self, assigned: bool, session: Duration) -> bool {
        let Some(member) = &self.member else {
            return false;
        };
        let mut member = lock(member);
        let before = member.unassigned.is_none();
        match assigned {
            true => member.unassigned = None,
            false => {
                member.unassigned.get_or_insert((Instant::now(), session));
            }
        }
        before != assigned
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
