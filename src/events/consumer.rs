//! The consumers' events: an MQTT consumer's connection, subscriptions, window and acks; a
//! consumer-group member's start, health, partitions and lag. Each also sets what the
//! consumer's `ConsumerStatus` shows, so that the log, the metrics and the status agree.

use std::time::Duration;

use metrics::{counter, gauge, Gauge};
use tracing::{error, info, warn};

use crate::flow::ConsumerStatus;

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
    pub status: &'a ConsumerStatus,
    pub session_present: bool,
    pub epoch: u64,
}

impl ConsumerConnected<'_> {
    pub fn emit(&self) {
        self.status.set_connected(true);
        counter!("mqbridge_mqtt_connects_total", "route" => self.route.to_owned()).increment(1);
        gauge!("mqbridge_consumers_connected", "route" => self.route.to_owned()).increment(1.0);
        info!(
            route = self.route,
            client_id = self.status.client_id(),
            session_present = self.session_present,
            epoch = self.epoch,
            "consumer connected"
        );
    }
}

/// A route joined a shared connection that was already up: its consumer there is connected,
/// with no new connection made.
pub struct ConsumerJoined<'a> {
    pub route: &'a str,
    pub status: &'a ConsumerStatus,
}

impl ConsumerJoined<'_> {
    pub fn emit(&self) {
        if !self.status.connected() {
            gauge!("mqbridge_consumers_connected", "route" => self.route.to_owned()).increment(1.0);
        }
        self.status.set_connected(true);
        tracing::debug!(
            route = self.route,
            client_id = self.status.client_id(),
            "joined a shared connection"
        );
    }
}

/// A PUBLISH no route of the connection takes. With subscription identifiers of routes that are
/// gone (a route removed while the bridge was away leaves its subscription in the session) it
/// is acknowledged; with none on a shared connection (a broker that stopped sending them) it is
/// left unacknowledged.
pub struct UnroutedMessage<'a> {
    pub connection: &'a str,
    pub topic: &'a str,
    pub identifiers: &'a [u32],
    pub acknowledged: bool,
}

impl UnroutedMessage<'_> {
    /// Reported once per identifier; later ones only count.
    pub fn emit(&self) {
        Self::count();
        match self.acknowledged {
            true => warn!(
                client_id = self.connection,
                topic = self.topic,
                identifiers = ?self.identifiers,
                "a message for a subscription no route holds (a route removed while the bridge \
                 was away?): acknowledged without delivery; later ones are only counted in \
                 mqbridge_mqtt_unrouted_total"
            ),
            false => error!(
                client_id = self.connection,
                topic = self.topic,
                "the broker sent a message without a subscription identifier on a shared \
                 connection: left unacknowledged; give the routes connections of their own \
                 (shared_connections = false)"
            ),
        }
    }

    pub fn count() {
        counter!("mqbridge_mqtt_unrouted_total").increment(1);
    }
}

/// A route left its shared connections for good (removed, or its subscriptions changed) while
/// messages for it were held between its runs: they are acknowledged without delivery.
pub struct HeldForRemovedRoute<'a> {
    pub route: &'a str,
    pub count: usize,
}

impl HeldForRemovedRoute<'_> {
    pub fn emit(&self) {
        counter!("mqbridge_mqtt_unrouted_total").increment(self.count as u64);
        warn!(
            route = self.route,
            count = self.count,
            "messages arrived for a route after it was removed: acknowledged without delivery"
        );
    }
}

/// The broker offers no subscription identifiers (CONNACK property 41 = 0): the route reads
/// through connections of its own.
pub struct NoSubscriptionIdentifiers<'a> {
    pub route: &'a str,
    pub broker: &'a str,
}

impl NoSubscriptionIdentifiers<'_> {
    pub fn emit(&self) {
        warn!(
            route = self.route,
            broker = self.broker,
            "the broker offers no subscription identifiers: the route reads through \
             connections of its own instead of shared ones"
        );
    }
}

/// A session a route no longer reads through left its share group, with what it had queued
/// read into the route.
pub struct SessionRetired<'a> {
    pub route: &'a str,
    pub client_id: &'a str,
    pub messages: usize,
}

impl SessionRetired<'_> {
    pub fn emit(&self) {
        info!(
            route = self.route,
            client_id = self.client_id,
            messages = self.messages,
            "an earlier session of the route left its share group"
        );
    }
}

pub struct ConsumerDisconnected<'a> {
    pub route: &'a str,
    pub status: &'a ConsumerStatus,
    pub error: &'a str,
}

impl ConsumerDisconnected<'_> {
    pub fn emit(&self) {
        self.status.set_connected(false);
        counter!("mqbridge_mqtt_disconnects_total", "route" => self.route.to_owned()).increment(1);
        gauge!("mqbridge_consumers_connected", "route" => self.route.to_owned()).decrement(1.0);
        warn!(
            route = self.route,
            client_id = self.status.client_id(),
            error = self.error,
            "consumer disconnected; reconnecting"
        );
    }
}

/// A consumer could not connect (or the broker refused it); it keeps trying with backoff.
pub struct ConnectFailed<'a> {
    pub route: &'a str,
    pub status: &'a ConsumerStatus,
    pub error: &'a str,
}

impl ConnectFailed<'_> {
    pub fn emit(&self) {
        self.status.set_connected(false);
        counter!("mqbridge_mqtt_connect_errors_total", "route" => self.route.to_owned())
            .increment(1);
        warn!(
            route = self.route,
            client_id = self.status.client_id(),
            error = self.error,
            "cannot connect to the broker; retrying"
        );
    }
}

/// The broker granted filters to a consumer; `complete`: every filter it asked for.
pub struct Subscribed<'a> {
    pub route: &'a str,
    pub status: &'a ConsumerStatus,
    pub granted: &'a [&'a str],
    pub complete: bool,
}

impl Subscribed<'_> {
    pub fn emit(&self) {
        if self.complete {
            self.status.set_subscribed();
        }
        for filter in self.granted {
            info!(
                route = self.route,
                client_id = self.status.client_id(),
                filter,
                "subscribed"
            );
        }
    }
}

/// The broker refused a filter, or the SUBSCRIBE could not be queued: the route cannot read
/// what it should.
pub struct SubscribeFailed<'a> {
    pub route: &'a str,
    pub status: &'a ConsumerStatus,
    pub error: &'a str,
}

impl SubscribeFailed<'_> {
    pub fn emit(&self) {
        self.status.set_refused(self.error.to_owned());
        counter!("mqbridge_subscribe_errors_total", "route" => self.route.to_owned()).increment(1);
        error!(
            route = self.route,
            client_id = self.status.client_id(),
            error = self.error,
            "subscription failed"
        );
    }
}

/// A consumer disconnected for good, its route stopping.
pub struct ConsumerStopped<'a> {
    pub route: &'a str,
    pub status: &'a ConsumerStatus,
}

impl ConsumerStopped<'_> {
    pub fn emit(&self) {
        self.status.set_connected(false);
        tracing::debug!(
            route = self.route,
            client_id = self.status.client_id(),
            "consumer stopped"
        );
    }
}

/// A consumer's window as the operator sees it: messages held now, and the most ever held.
pub struct ConsumerWindow {
    held: Gauge,
    most: Gauge,
}

impl ConsumerWindow {
    /// The window of consumer `lane` (numbered from 0) of `route`.
    pub fn new(route: &str, lane: usize) -> Self {
        let (route, consumer) = (route.to_owned(), (lane + 1).to_string());
        ConsumerWindow {
            held: gauge!("mqbridge_inflight_messages", "route" => route.clone(), "consumer" => consumer.clone()),
            most: gauge!("mqbridge_inflight_messages_max", "route" => route, "consumer" => consumer),
        }
    }

    /// The window of a connection the metrics do not show (one retiring an old session).
    pub fn unseen() -> Self {
        ConsumerWindow {
            held: Gauge::noop(),
            most: Gauge::noop(),
        }
    }

    /// A message came in; `most` is the most held at once so far, when this one set it.
    pub fn held(&self, most: Option<usize>) {
        // Moved by steps, not set, so that the poll task and the pipeline cannot leave it
        // stale.
        self.held.increment(1.0);
        if let Some(most) = most {
            self.most.set(most as f64);
        }
    }

    /// A message left (acknowledged or given up).
    pub fn left(&self) {
        self.held.decrement(1.0);
    }
}

/// A consumer-group member started: it is in its group and reads.
pub struct SourceStarted<'a> {
    pub route: &'a str,
    pub status: &'a ConsumerStatus,
}

impl SourceStarted<'_> {
    pub fn emit(&self) {
        self.status.set_trouble(None);
        self.status.set_subscribed();
        info!(
            route = self.route,
            group = self.status.client_id(),
            "consumer group member started"
        );
    }
}

/// A route's Kafka or RocketMQ consumer could not start (tried again with a growing wait), or
/// reads nothing for a reason the client reported.
pub struct SourceFailed<'a> {
    pub route: &'a str,
    pub status: &'a ConsumerStatus,
    pub error: &'a str,
}

impl SourceFailed<'_> {
    pub fn emit(&self) {
        self.status.set_trouble(Some(self.error.to_owned()));
        error!(route = self.route, error = self.error, "source");
    }
}

/// A source that had failed reads again.
pub struct SourceRecovered<'a> {
    pub route: &'a str,
    pub status: &'a ConsumerStatus,
}

impl SourceRecovered<'_> {
    pub fn emit(&self) {
        self.status.set_trouble(None);
        info!(route = self.route, "source reads again");
    }
}

/// A group member left its group, its route stopping.
pub struct SourceStopped<'a> {
    pub route: &'a str,
    pub status: &'a ConsumerStatus,
}

impl SourceStopped<'_> {
    pub fn emit(&self) {
        self.status.set_connected(false);
        tracing::debug!(route = self.route, "consumer group member left its group");
    }
}

/// A group member read from a partition (or queue) for the first time in this run.
pub struct PartitionRead<'a> {
    pub route: &'a str,
    pub status: &'a ConsumerStatus,
    pub partition: &'a str,
}

impl PartitionRead<'_> {
    pub fn emit(&self) {
        self.status.add_partition(self.partition.to_owned());
        tracing::debug!(
            route = self.route,
            partition = self.partition,
            "reading a partition"
        );
    }
}

/// Whether a group member has partitions assigned; `session`: how long it may have none.
pub struct Assignment<'a> {
    pub route: &'a str,
    pub status: &'a ConsumerStatus,
    pub assigned: bool,
    pub session: Duration,
}

impl Assignment<'_> {
    pub fn emit(&self) {
        if self.status.set_assigned(self.assigned, self.session) {
            match self.assigned {
                true => info!(route = self.route, "the group gave the member partitions"),
                false => tracing::debug!(
                    route = self.route,
                    session = ?self.session,
                    "the member has no partition: it reads nothing"
                ),
            }
        }
    }
}

/// How far a group member is behind one partition (or queue): its gauge.
pub struct SourceLag(Gauge);

impl SourceLag {
    pub fn new(route: &str, topic: &str, partition: &str) -> Self {
        let labels = [
            ("route", route.to_owned()),
            ("topic", topic.to_owned()),
            ("partition", partition.to_owned()),
        ];
        SourceLag(gauge!("mqbridge_source_lag_messages", &labels))
    }

    /// `messages` between the member's committed offset and the partition's end.
    pub fn show(&self, messages: i64) {
        self.0.set(messages.max(0) as f64);
    }
}
