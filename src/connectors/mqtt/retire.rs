//! Sessions a route no longer reads through. mosquitto (2.0.11, tried) keeps handing a share
//! group's messages to a member that is offline with a persistent session, and queues them
//! there until the session expires. A route that reads through its pool's connections leaves
//! behind the sessions of its own consumers (`{prefix}-{route}-{n}`) of an earlier version, or
//! of an earlier `shared_connections = false`. Once per route and data directory, each is
//! connected again: its subscription is withdrawn (so that it leaves the share group), what it
//! queued is read into the route's pipeline and acknowledged, and it disconnects. A marker under
//! `data_dir/mqtt/retired/` says it was done.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::consumer::{Connection, ConnectionSpec, Deliveries, Subscription, OWN};
use super::options::Endpoint;
use super::pool::{until, Ready, GRACE};
use crate::events;
use crate::flow::Budget;

/// Sessions retired at once across the bridge: a first start of a thousand routes retires a
/// few at a time, not a thousand connections at once.
static AT_ONCE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// No message for this long, and nothing held: what the session had queued was read.
const QUIET: Duration = Duration::from_secs(2);
/// The most a retirement takes; past it the session is left to expire.
const LONGEST: Duration = Duration::from_secs(60);

/// What retiring a route's old sessions takes.
pub struct Retire {
    pub endpoint: Endpoint,
    pub budget: Arc<Budget>,
    pub data_dir: PathBuf,
    /// The route's subscription, and where what the sessions queued goes (its parking lane).
    pub sub: Arc<Subscription>,
    pub lane: usize,
    pub tx: Deliveries,
    pub consumers: usize,
    /// Whether the broker granted the route's subscription on its pool: until then (or
    /// `GRACE`) an old session is the route's only member of its share group, and withdrawing
    /// it would leave the group without one (what is published then is dropped).
    pub subscribed: Ready,
    /// The route stops: retiring waits for a later run.
    pub stop: CancellationToken,
}

impl Retire {
    /// Retires the route's own consumers' sessions not retired yet from this data directory.
    pub async fn run(self) {
        let prefix = &self.endpoint.config().client_id_prefix;
        let route = &self.sub.route;
        for n in 1..=self.consumers {
            let id = format!("{prefix}-{route}-{n}");
            let marker = self.data_dir.join("mqtt").join("retired").join(&id);
            if marker.exists() {
                continue;
            }
            // At most `GRACE`: a subscription the broker refuses on the pool must not keep
            // an old session in the group for good, taking its share of the granted filters'
            // messages where nobody reads them.
            let granted = until(|| (self.subscribed)(), Some(GRACE));
            let permit = tokio::select! {
                permit = async { granted.await; AT_ONCE.acquire().await } => permit,
                _ = self.stop.cancelled() => return,
            };
            let Ok(_permit) = permit else { return };
            if !self.retire(&id).await {
                return;
            }
            if let Some(dir) = marker.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = std::fs::write(&marker, b"");
        }
    }

    /// Connects `id`, withdraws its subscription and reads what it queued; false when the
    /// route stopped first.
    async fn retire(&self, id: &str) -> bool {
        let config = self.endpoint.config();
        let connection = Connection::start(
            &self.endpoint,
            ConnectionSpec {
                client_id: id.to_owned(),
                label: self.sub.route.clone(),
                number: self.lane,
                receive_maximum: config.receive_maximum as usize,
                max_inflight_bytes: config.max_inflight_bytes as usize,
                publisher: config.publisher.clone(),
                pause: None,
                shared: false,
                identifiers: None,
                expected: None,
                budget: self.budget.clone(),
                counted: false,
                stray: None,
            },
        );
        // Withdrawn before it connects: its CONNACK sends the UNSUBSCRIBE, and nothing is
        // subscribed.
        connection.set(OWN, self.sub.clone(), self.lane, self.tx.clone());
        connection.withdraw(OWN, false);
        let started = tokio::time::Instant::now();
        let (mut last, mut since) = (0, tokio::time::Instant::now());
        let finished = loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = self.stop.cancelled() => break false,
            }
            let (quiet, present, received, held) = connection.settled();
            if received != last {
                (last, since) = (received, tokio::time::Instant::now());
            }
            // A session the broker did not have holds nothing to read.
            if quiet && held == 0 && (!present || since.elapsed() >= QUIET) {
                break true;
            }
            if started.elapsed() >= LONGEST {
                break held == 0;
            }
        };
        connection.close().await;
        if finished {
            events::SessionRetired {
                route: &self.sub.route,
                client_id: id,
                messages: last,
            }
            .emit();
        }
        finished
    }
}
