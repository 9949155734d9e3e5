//! One MQTT consumer connection: a client whose session holds the subscriptions of one route
//! (a connection of the route's own) or of several (a connection of a `pool`, each route's
//! SUBSCRIBE carrying its subscription identifier, MQTT v5 §3.8.2.1.2). Each PUBLISH goes to
//! the routes its identifiers name; on a route's own connection, to that route.
//!
//! Delivery guarantee: at least once for QoS 1. The poll task only moves PUBLISH packets into
//! the routes' channels; acknowledgements travel back through the `Acker` after the sink has
//! confirmed the message (see `acker.rs` for how an ack is tied to its connection). A message
//! that arrives for a route between two of its runs (a reload restarting it) is held, and
//! handed to the route's next run.
//!
//! Bounded memory: the bridge announces `receive_maximum` in CONNECT, but does not rely on the
//! broker honouring it (mosquitto before 2.0.13 sends past it). It counts the messages and the
//! payload bytes it holds and, while either window is full, tells rumqttc's event loop to stop
//! reading (the `ReadGate` of the bridge's patch to rumqttc, `vendor/rumqttc/PATCH.md`): the
//! backlog stays with the broker, behind TCP's flow control, while the event loop goes on
//! writing acks and keep-alive pings. So a connection holds at most `receive_maximum` messages
//! or `max_inflight_bytes` of payload (or one larger message) before it stops, plus what one
//! socket read brings in (up to nine packets); nothing is refused or dropped.

mod poller;
mod table;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ReadGate};
use tokio::sync::watch;

use super::acker::{AckToken, Shared};
use super::config::PublisherProperties;
use super::pool::{Identifiers, GRACE};
use crate::connectors::mqtt::Endpoint;
use crate::events;
use crate::flow::{Budget, ConsumerStatus, IntakeSender, Pause};
use poller::Poller;
use table::{lock, settle, subscribe, unsubscribe_filters, Entry, Table};

/// What one route reads through a connection.
pub struct Subscription {
    pub route: Arc<str>,
    pub filters: Vec<String>,
    pub share_group: String,
    pub qos: QoS,
    /// An ordered route: each message gets its topic's order key (`Message::order_key`).
    pub order: bool,
    /// What the operator sees of the route's consumer on this connection.
    pub status: Arc<ConsumerStatus>,
}

impl Subscription {
    fn shared_filters(&self) -> impl Iterator<Item = String> + '_ {
        let group = &self.share_group;
        self.filters
            .iter()
            .map(move |f| format!("$share/{group}/{f}"))
    }
}

pub struct ConnectionSpec {
    pub client_id: String,
    /// Names the window in its gauges (`route` label): the route of its own connection, the
    /// pool of a shared one.
    pub label: Arc<str>,
    /// The consumer number in the gauges (0-based).
    pub number: usize,
    pub receive_maximum: usize,
    /// Payload bytes held at most (beyond one message).
    pub max_inflight_bytes: usize,
    pub publisher: PublisherProperties,
    /// A route's own connection stops reading while the route is paused; a shared one reads on
    /// (a paused route's subscriptions move: `pool`).
    pub pause: Option<Arc<Pause>>,
    /// Subscriptions carry identifiers, and PUBLISHes are routed by them.
    pub shared: bool,
    /// Told at every CONNACK whether the broker offers subscription identifiers.
    pub identifiers: Option<Arc<watch::Sender<Option<bool>>>>,
    /// The identifiers routes hold: what arrives under one the connection does not carry yet
    /// waits for its route.
    pub expected: Option<Arc<Identifiers>>,
    /// The bridge's memory budget: the connection's window takes a share of it.
    pub budget: Arc<Budget>,
    /// A consumer of routes, which the status and metrics show; false for a connection that
    /// only retires an old session (`retire`), which logs nothing of its own.
    pub counted: bool,
    /// Told of an identifier a route holds that arrived here without an entry (its
    /// subscription left in this connection's session by an earlier run, say one paused when
    /// the bridge stopped), once per batch of such messages: the pool adopts them for the route.
    pub stray: Option<Stray>,
}

/// Called with a subscription identifier that arrived on a connection without an entry.
pub type Stray = Arc<dyn Fn(u32) + Send + Sync>;

/// Where a connection hands what it receives: a route's pipeline. Unbounded on purpose: the
/// poll task must never wait on it; the in-flight window bounds what is in it.
pub type Deliveries = IntakeSender<AckToken>;

/// Subscription identifiers are 1 to 268,435,455; a route's own connection sends none and files
/// its one subscription under 0.
pub const OWN: u32 = 0;

/// A consumer connection, running. Dropped before its task ended, it stops the task: a route's
/// own connection is dropped without a DISCONNECT (its route was aborted: the broker keeps the
/// session and redelivers what was not acknowledged once the route is back); a shared one is
/// asked to disconnect.
pub struct Connection {
    client: AsyncClient,
    shared: Arc<Shared>,
    table: Arc<Mutex<Table>>,
    task: Option<tokio::task::JoinHandle<()>>,
    spec_shared: bool,
    counted: bool,
}

impl Connection {
    /// Starts a consumer connection; it subscribes what it is given (`set`) once connected.
    pub fn start(endpoint: &Endpoint, spec: ConnectionSpec) -> Connection {
        let options = endpoint.consumer_options(&spec.client_id);
        // Room for every ack the in-flight window can produce, plus control packets.
        let (client, mut eventloop) = AsyncClient::new(options, 2 * spec.receive_maximum + 64);
        let window = match spec.counted {
            true => events::ConsumerWindow::new(&spec.label, spec.number),
            false => events::ConsumerWindow::unseen(),
        };
        let shared = Arc::new(Shared::new(client.clone(), window, &spec.budget));
        let window = (
            shared.clone(),
            spec.receive_maximum,
            spec.max_inflight_bytes,
        );
        let pause = spec.pause.clone();
        let may_read = move || {
            let open = !pause.as_ref().is_some_and(|p| p.is_paused());
            window.0.may_read(open, window.1, window.2)
        };
        if let Some(pause) = &spec.pause {
            pause.register(shared.wake.clone());
        }
        eventloop.set_read_gate(ReadGate::counted(may_read, shared.wake.clone()));
        let table = Arc::new(Mutex::new(Table::new()));
        if spec.shared {
            let (table, client) = (Arc::downgrade(&table), client.clone());
            let (shared, expected) = (shared.clone(), spec.expected.clone());
            let id = spec.client_id.clone();
            tokio::spawn(async move {
                tokio::time::sleep(GRACE).await;
                if let Some(table) = table.upgrade() {
                    settle(&table, &client, &shared, expected.as_deref(), &id);
                }
            });
        }
        let (spec_shared, counted) = (spec.shared, spec.counted);
        let poller = Poller {
            status: Arc::new(ConsumerStatus::new(spec.client_id.clone())),
            spec,
            client: client.clone(),
            shared: shared.clone(),
            table: table.clone(),
            address: endpoint.address(),
        };
        let task = tokio::spawn(poller.run(eventloop));
        Connection {
            client,
            shared,
            table,
            task: Some(task),
            spec_shared,
            counted,
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        lock(&self.table)
    }

    /// Carries `sub` under `id` on lane `lane` of its route, handing what arrives to `tx`
    /// (first what was held for the route), and subscribes it if it is not.
    pub fn set(&self, id: u32, sub: Arc<Subscription>, lane: usize, tx: Deliveries) {
        let mut table = self.table();
        let connected = table.connected;
        let turn = table.next_turn();
        let unclaimed = table.unclaimed.remove(&id).unwrap_or_default();
        let entry = table.entries.entry(id).or_insert_with(|| Entry {
            sub: sub.clone(),
            lane,
            tx: None,
            held: Vec::new(),
            wanted: false,
            remove: false,
            granted: false,
            subscribing: None,
            turn: 0,
        });
        entry.held.extend(unclaimed);
        let changed = entry.sub.filters != sub.filters
            || entry.sub.share_group != sub.share_group
            || entry.sub.qos != sub.qos;
        let old = std::mem::replace(&mut entry.sub, sub);
        entry.remove = false;
        entry.turn = turn;
        entry.attach(lane, tx);
        let again = !entry.wanted || changed || !entry.granted;
        entry.wanted = true;
        if again {
            // Granted again only by the SUBACK of the SUBSCRIBE that follows.
            entry.granted = false;
            entry.subscribing = None;
        }
        if connected && self.counted {
            let (route, status) = (&*entry.sub.route, &*entry.sub.status);
            events::ConsumerJoined { route, status }.emit();
            if !again {
                // A new run of the route on the subscription its last run left: granted.
                let filters: Vec<&str> = entry.sub.filters.iter().map(String::as_str).collect();
                events::Subscribed {
                    route,
                    status,
                    granted: &filters,
                    complete: true,
                }
                .emit();
            }
        }
        if changed {
            // Filters the route no longer reads go; the rest are subscribed again below.
            let gone: Vec<String> = old
                .shared_filters()
                .filter(|f| !entry.sub.shared_filters().any(|n| &n == f))
                .collect();
            if connected && !gone.is_empty() {
                unsubscribe_filters(&self.client, &mut table, id, gone);
            }
        }
        if connected && again {
            subscribe(&self.client, self.spec_shared, &mut table, id);
        }
    }

    /// Hands what arrives under `id` to `tx` on lane `lane`, as `attach` does; without an
    /// entry, but with messages that arrived under `id` (a subscription the session kept from
    /// an earlier run), makes one for them, wanted until withdrawn. Returns whether the
    /// connection carries `id` now.
    pub fn adopt(
        &self,
        id: u32,
        sub: impl FnOnce() -> Arc<Subscription>,
        lane: usize,
        tx: Deliveries,
    ) -> bool {
        let mut table = self.table();
        if let Some(entry) = table.entries.get_mut(&id) {
            entry.attach(lane, tx);
            return true;
        }
        let Some(held) = table.unclaimed.remove(&id) else {
            return false;
        };
        let turn = table.next_turn();
        let mut entry = Entry {
            sub: sub(),
            lane,
            tx: None,
            held,
            wanted: true,
            remove: false,
            granted: false,
            subscribing: None,
            turn,
        };
        entry.attach(lane, tx);
        table.entries.insert(id, entry);
        true
    }

    /// Hands what arrives under `id` to `tx` on lane `lane` (first what was held), without
    /// subscribing anything.
    pub fn attach(&self, id: u32, lane: usize, tx: Deliveries) {
        if let Some(entry) = self.table().entries.get_mut(&id) {
            entry.attach(lane, tx);
        }
    }

    /// Lets go of the route's pipeline: what arrives for it from now on is held for its next
    /// run.
    pub fn detach(&self, id: u32) {
        if let Some(entry) = self.table().entries.get_mut(&id) {
            entry.tx = None;
        }
    }

    /// Withdraws subscription `id` from the broker (UNSUBSCRIBE). What arrives before the
    /// broker confirms still goes to the route. `remove`: once confirmed, the entry goes, and
    /// what it held for a route that is gone is acknowledged without delivery (counted).
    pub fn withdraw(&self, id: u32, remove: bool) {
        self.withdraw_if(id, remove, None);
    }

    /// Withdraws subscription `id` as `withdraw` does, unless it was set or withdrawn since
    /// `turn` (`turn`): a withdrawal decided earlier that a later move overtook.
    pub fn withdraw_at(&self, id: u32, turn: u64) {
        self.withdraw_if(id, false, Some(turn));
    }

    fn withdraw_if(&self, id: u32, remove: bool, at: Option<u64>) {
        let mut table = self.table();
        let connected = table.connected;
        let turn = table.next_turn();
        let Some(entry) = table.entries.get_mut(&id) else {
            return;
        };
        if at.is_some_and(|at| at != entry.turn) {
            return;
        }
        entry.turn = turn;
        entry.wanted = false;
        entry.granted = false;
        // A SUBACK still to come for an earlier SUBSCRIBE grants nothing now.
        entry.subscribing = None;
        entry.remove = remove;
        if connected {
            let filters = entry.sub.shared_filters().collect();
            unsubscribe_filters(&self.client, &mut table, id, filters);
        }
    }

    /// Connected, with no SUBSCRIBE or UNSUBSCRIBE unanswered; whether the broker had the
    /// session; how many messages it has received, and how many it holds.
    pub fn settled(&self) -> (bool, bool, usize, usize) {
        let table = self.table();
        let quiet = table.connected && table.pending.is_empty();
        let received = self.shared.received.load(Ordering::Acquire);
        let held = self.shared.in_flight.load(Ordering::Acquire);
        (quiet, table.session_present, received, held)
    }

    /// Tells, whenever asked, whether the broker granted subscription `id` here.
    pub fn granted(&self, id: u32) -> impl Fn() -> bool + Send + Sync + 'static {
        let table = self.table.clone();
        move || lock(&table).granted(id)
    }

    /// Whether the broker granted subscription `id` here.
    pub fn is_granted(&self, id: u32) -> bool {
        self.table().granted(id)
    }

    /// Where subscription `id` stands (none when the connection does not carry it): every
    /// set and withdrawal moves it on.
    pub fn turn(&self, id: u32) -> Option<u64> {
        self.table().entries.get(&id).map(|e| e.turn)
    }

    /// Whether the connection carries `id`.
    pub fn carries(&self, id: u32) -> bool {
        self.table().entries.contains_key(&id)
    }

    /// How many messages routes gave up here since the connection was last made: the broker
    /// sends them again only on a new connection of the session.
    pub fn stranded(&self) -> usize {
        self.shared.stranded.load(Ordering::Acquire)
    }

    /// Connects again (the session kept), so that the broker sends what was given up again.
    pub fn reconnect(&self) {
        self.shared.reconnecting.store(true, Ordering::Release);
        let _ = self.client.try_disconnect();
    }

    /// Disconnects, keeping the session, once the queued acks are written; waits for the poll
    /// task to end.
    pub async fn close(mut self) {
        self.shared.closing.store(true, Ordering::Release);
        let _ = self.client.disconnect().await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// The client and window the route's `Acker` for this connection uses.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let Some(task) = self.task.take() else { return };
        if task.is_finished() {
            return;
        }
        self.shared.closing.store(true, Ordering::Release);
        match self.spec_shared {
            true => {
                let _ = self.client.try_disconnect();
            }
            false => task.abort(),
        }
    }
}
