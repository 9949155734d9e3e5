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

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{
    Filter, Packet, Publish, Subscribe, SubscribeProperties, SubscribeReasonCode, Unsubscribe,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, ReadGate, Request};
use rumqttc::Outgoing;
use tokio::sync::{mpsc, watch};

use super::acker::{AckToken, Pending, Shared};
use super::config::PublisherProperties;
use super::convert;
use super::pool::{Identifiers, GRACE};
use crate::connectors::mqtt::Endpoint;
use crate::events;
use crate::flow::Pause;
use crate::flow::{budget, Budget, ConsumerStatus};
use crate::flow::{Delivery, IntakeSender};
use crate::message::Message;

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
}

/// Where a connection hands what it receives: a route's pipeline. Unbounded on purpose: the
/// poll task must never wait on it; the in-flight window bounds what is in it.
pub type Deliveries = IntakeSender<AckToken>;

/// Subscription identifiers are 1 to 268,435,455; a route's own connection sends none and files
/// its one subscription under 0.
pub const OWN: u32 = 0;

/// Packet ids the bridge gives its SUBSCRIBE and UNSUBSCRIBE packets: above the consumer's
/// outgoing in-flight limit, where rumqttc's own ids never reach (`vendor/rumqttc/PATCH.md`).
const FIRST_PACKET_ID: u16 = 1024;

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

/// The routes a connection carries.
struct Table {
    entries: HashMap<u32, Entry>,
    /// SUBSCRIBE and UNSUBSCRIBE packets sent and not yet answered.
    pending: HashMap<u16, (u32, Op)>,
    next_packet_id: u16,
    connected: bool,
    /// Identifiers no route holds that PUBLISHes named, each reported once.
    unknown: HashSet<u32>,
    /// What arrived under an identifier before its route joined the connection.
    unclaimed: HashMap<u32, Vec<Delivery<AckToken>>>,
    /// The last CONNACK said the broker had the session.
    session_present: bool,
    /// `GRACE` has passed since the connection started: every route configured then has
    /// claimed its identifier, and what arrives under one nobody holds is acknowledged.
    settled: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Subscribe,
    Unsubscribe,
}

struct Entry {
    sub: Arc<Subscription>,
    /// The route's acknowledgement lane this connection is.
    lane: usize,
    /// The route's pipeline; none between two runs of the route.
    tx: Option<Deliveries>,
    /// What arrived while there was no pipeline: handed to the next.
    held: Vec<Delivery<AckToken>>,
    /// The subscription is wanted on the broker; false once withdrawn (a paused route's, or
    /// one being removed).
    wanted: bool,
    /// Removed once the broker confirms the UNSUBSCRIBE.
    remove: bool,
    /// The broker granted every filter of the last SUBSCRIBE, on this connection.
    granted: bool,
}

impl Entry {
    fn attach(&mut self, lane: usize, tx: Deliveries) {
        self.lane = lane;
        self.tx = Some(tx);
        for d in std::mem::take(&mut self.held) {
            self.hand(d);
        }
    }

    fn hand(&mut self, d: Delivery<AckToken>) {
        let key = match self.sub.order {
            true => d.msg.order_key(),
            false => 0,
        };
        let d = Delivery {
            lane: self.lane,
            key,
            ..d
        };
        match &self.tx {
            Some(tx) => {
                if let Err(mpsc::error::SendError(d)) = tx.send(Box::new(d)) {
                    // The route's run ended: held for its next one.
                    self.tx = None;
                    self.held.push(*d);
                }
            }
            None => self.held.push(d),
        }
    }
}

impl Table {
    fn packet_id(&mut self) -> u16 {
        let id = self.next_packet_id;
        self.next_packet_id = match id {
            u16::MAX => FIRST_PACKET_ID,
            n => n + 1,
        };
        id
    }
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
        let table = Arc::new(Mutex::new(Table {
            entries: HashMap::new(),
            pending: HashMap::new(),
            next_packet_id: FIRST_PACKET_ID,
            connected: false,
            unknown: HashSet::new(),
            unclaimed: HashMap::new(),
            settled: false,
            session_present: false,
        }));
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
        let unclaimed = table.unclaimed.remove(&id).unwrap_or_default();
        let entry = table.entries.entry(id).or_insert_with(|| Entry {
            sub: sub.clone(),
            lane,
            tx: None,
            held: Vec::new(),
            wanted: false,
            remove: false,
            granted: false,
        });
        entry.held.extend(unclaimed);
        let changed = entry.sub.filters != sub.filters
            || entry.sub.share_group != sub.share_group
            || entry.sub.qos != sub.qos;
        let old = std::mem::replace(&mut entry.sub, sub);
        entry.remove = false;
        entry.attach(lane, tx);
        let again = !entry.wanted || changed || !entry.granted;
        entry.wanted = true;
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
        let mut table = self.table();
        let connected = table.connected;
        let Some(entry) = table.entries.get_mut(&id) else {
            return;
        };
        entry.wanted = false;
        entry.granted = false;
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

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    // A panic while holding it leaves the table usable.
    table
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Poller {
    spec: ConnectionSpec,
    client: AsyncClient,
    shared: Arc<Shared>,
    table: Arc<Mutex<Table>>,
    address: String,
    /// The connection's own status, for events while it carries no route.
    status: Arc<ConsumerStatus>,
}

impl Poller {
    async fn run(self, mut eventloop: EventLoop) {
        let mut backoff = Duration::from_millis(100);
        let mut broker_reason = String::new();
        let mut connected = false;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(publish))) => self.on_publish(publish),
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    backoff = Duration::from_millis(100);
                    connected = true;
                    let identifiers = ack
                        .properties
                        .as_ref()
                        .and_then(|p| p.subscription_identifiers_available);
                    self.on_connack(ack.session_present, identifiers != Some(0));
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    self.on_suback(ack.pkid, &ack.return_codes)
                }
                Ok(Event::Incoming(Packet::UnsubAck(ack))) => self.on_unsuback(ack.pkid),
                Ok(Event::Incoming(Packet::Disconnect(d))) => {
                    // Reported with the connection error that follows.
                    broker_reason = format!(" after the broker's DISCONNECT ({:?})", d.reason_code);
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    if self.shared.reconnecting.swap(false, Ordering::AcqRel)
                        && !self.shared.closing.load(Ordering::Acquire)
                    {
                        // Asked to connect again: the broker closes, and the loop reconnects.
                        continue;
                    }
                    self.each(|route, status| {
                        events::ConsumerStopped { route, status }.emit();
                    });
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    self.connection_lost(&mut eventloop);
                    if self.shared.closing.load(Ordering::Acquire) {
                        self.each(|route, status| {
                            events::ConsumerStopped { route, status }.emit();
                        });
                        break;
                    }
                    let reason = std::mem::take(&mut broker_reason);
                    let error = format!("{e}{reason} (broker {})", self.address);
                    let was = std::mem::take(&mut connected);
                    self.each(|route, status| match was {
                        true => events::ConsumerDisconnected {
                            route,
                            status,
                            error: &error,
                        }
                        .emit(),
                        false => events::ConnectFailed {
                            route,
                            status,
                            error: &error,
                        }
                        .emit(),
                    });
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Calls `f` with each route the connection carries (or with the connection itself when
    /// it carries none).
    fn each(&self, mut f: impl FnMut(&str, &ConsumerStatus)) {
        if !self.spec.counted {
            return;
        }
        let subs: Vec<Arc<Subscription>> = lock(&self.table)
            .entries
            .values()
            .map(|e| e.sub.clone())
            .collect();
        if subs.is_empty() {
            f(&self.spec.label, &self.status);
        }
        for sub in subs {
            f(&sub.route, &sub.status);
        }
    }

    /// A new epoch begins: acks of the old one are refused from now on, any that slipped into
    /// rumqttc's queue since it cleaned up are purged (`clean` drops queued PUBACKs), and so are
    /// events rumqttc read on the old connection but has not handed out yet (`clean` keeps
    /// them: a PUBLISH among them would otherwise be taken as the new connection's).
    fn connection_lost(&self, eventloop: &mut EventLoop) {
        let mut epoch = self.shared.epoch();
        *epoch += 1;
        // What routes gave up comes again on the next connection.
        self.shared.stranded.store(0, Ordering::Release);
        eventloop.clean();
        eventloop.state.events.clear();
        let mut table = lock(&self.table);
        table.connected = false;
        table.pending.clear();
        for entry in table.entries.values_mut() {
            entry.granted = false;
        }
    }

    fn on_publish(&self, publish: Publish) {
        if self.shared.closing.load(Ordering::Acquire) {
            return; // not acknowledged: the broker redelivers it to the group
        }
        let mut table = lock(&self.table);
        let mut targets: Vec<u32> = match self.spec.shared {
            false => table.entries.keys().copied().take(1).collect(),
            true => {
                let ids = publish.properties.as_ref();
                let ids = ids.map(|p| &p.subscription_identifiers[..]).unwrap_or(&[]);
                ids.iter().map(|&id| id as u32).collect()
            }
        };
        targets.sort_unstable();
        targets.dedup();
        // The routes it goes to: those the connection carries, and those that have not joined
        // yet (it waits for them): one that holds the identifier, or, until the connection
        // settled, any.
        let expected = self.spec.expected.as_deref();
        let settled = table.settled;
        let known: Vec<u32> = targets
            .iter()
            .copied()
            .filter(|id| {
                table.entries.contains_key(id)
                    || !settled
                    || expected.is_some_and(|e| e.expects(*id))
            })
            .collect();
        if known.is_empty() {
            self.unrouted(&mut table, &publish, &targets);
            return;
        }
        let (payload, topic) = (publish.payload.len(), publish.topic.len());
        let slot = self.shared.hold(payload, budget::cost(payload, topic));
        let pending = Pending {
            qos: publish.qos,
            packet_id: publish.pkid,
            epoch: *self.shared.epoch(),
            _slot: slot,
        };
        let msg = convert::message(&publish, &self.spec.publisher);
        let mut tokens = match known.len() {
            1 => vec![AckToken::whole(pending)],
            n => AckToken::joint(pending, n),
        };
        for id in known {
            let token = tokens.pop().expect("a token per route");
            let d = delivery(msg.clone(), token);
            match table.entries.get_mut(&id) {
                Some(entry) => entry.hand(d),
                None => table.unclaimed.entry(id).or_default().push(d),
            }
        }
    }

    /// A PUBLISH no route this connection carries takes. With identifiers of routes that are
    /// gone (a route removed while the bridge was away leaves its subscription in the session),
    /// it is acknowledged, counted and reported. Without any on a shared connection, the broker
    /// stopped sending them: it stays unacknowledged, for a connection of the route's own.
    fn unrouted(&self, table: &mut Table, publish: &Publish, ids: &[u32]) {
        if ids.is_empty() {
            events::UnroutedMessage {
                connection: &self.spec.client_id,
                topic: &String::from_utf8_lossy(&publish.topic),
                identifiers: ids,
                acknowledged: false,
            }
            .emit();
            return;
        }
        let first = ids.iter().any(|id| table.unknown.insert(*id));
        if first {
            events::UnroutedMessage {
                connection: &self.spec.client_id,
                topic: &String::from_utf8_lossy(&publish.topic),
                identifiers: ids,
                acknowledged: true,
            }
            .emit();
        } else {
            events::UnroutedMessage::count();
        }
        if publish.qos != QoS::AtMostOnce {
            let _epoch = self.shared.epoch();
            let _ = self.client.try_ack(publish);
        }
    }

    fn on_connack(&self, session_present: bool, identifiers: bool) {
        if let Some(tell) = &self.spec.identifiers {
            tell.send_replace(Some(identifiers));
        }
        if self.shared.closing.load(Ordering::Acquire) {
            return; // a DISCONNECT is on its way: nothing may follow it
        }
        let epoch = *self.shared.epoch();
        let mut table = lock(&self.table);
        table.connected = true;
        table.session_present = session_present;
        let ids: Vec<(u32, bool, Arc<Subscription>)> = table
            .entries
            .iter()
            .map(|(id, e)| (*id, e.wanted, e.sub.clone()))
            .collect();
        if ids.is_empty() && self.spec.counted {
            events::ConsumerConnected {
                route: &self.spec.label,
                status: &self.status,
                session_present,
                epoch,
            }
            .emit();
        }
        // Subscribing again on a resumed session is harmless and repairs a lost one; a
        // subscription withdrawn while away is withdrawn again, the session may still hold it.
        for (id, wanted, sub) in ids {
            if self.spec.counted {
                events::ConsumerConnected {
                    route: &sub.route,
                    status: &sub.status,
                    session_present,
                    epoch,
                }
                .emit();
            }
            match wanted {
                true => subscribe(&self.client, self.spec.shared, &mut table, id),
                false => {
                    let filters = sub.shared_filters().collect();
                    unsubscribe_filters(&self.client, &mut table, id, filters);
                }
            }
        }
    }

    /// The broker's answer to a SUBSCRIBE: every filter granted, or the refusals.
    fn on_suback(&self, pkid: u16, codes: &[SubscribeReasonCode]) {
        let mut table = lock(&self.table);
        let Some((id, Op::Subscribe)) = table.pending.remove(&pkid) else {
            return;
        };
        let Some(entry) = table.entries.get_mut(&id) else {
            return;
        };
        let sub = entry.sub.clone();
        let mut granted = Vec::new();
        let mut refused = Vec::new();
        for (code, filter) in codes.iter().zip(&sub.filters) {
            match code {
                SubscribeReasonCode::Success(_) => granted.push(filter.as_str()),
                code => refused.push(format!(
                    "broker refused $share/{}/{filter}: {code:?}",
                    sub.share_group
                )),
            }
        }
        let complete = refused.is_empty() && granted.len() == sub.filters.len();
        entry.granted = complete;
        drop(table);
        if !self.spec.counted {
            return;
        }
        let (route, status) = (&*sub.route, &*sub.status);
        events::Subscribed {
            route,
            status,
            granted: &granted,
            complete,
        }
        .emit();
        for error in &refused {
            events::SubscribeFailed {
                route,
                status,
                error,
            }
            .emit();
        }
    }

    /// The broker confirmed an UNSUBSCRIBE: nothing more arrives for it. An entry being
    /// removed goes; what it held for a route that is gone is acknowledged, counted.
    fn on_unsuback(&self, pkid: u16) {
        let mut table = lock(&self.table);
        let Some((id, Op::Unsubscribe)) = table.pending.remove(&pkid) else {
            return;
        };
        let still_pending = table.pending.values().any(|p| p.0 == id);
        let remove = table
            .entries
            .get(&id)
            .is_some_and(|e| e.remove && !e.wanted && !still_pending);
        if !remove {
            return;
        }
        let entry = table.entries.remove(&id).expect("checked");
        drop(table);
        if !entry.held.is_empty() {
            events::HeldForRemovedRoute {
                route: &entry.sub.route,
                count: entry.held.len(),
            }
            .emit();
        }
        let epoch = self.shared.epoch();
        for d in entry.held {
            ack_now(&self.client, d.token, *epoch);
        }
    }
}

/// Queues the SUBSCRIBE of `id`'s filters, numbered, with its identifier on a shared
/// connection.
fn subscribe(client: &AsyncClient, shared: bool, table: &mut Table, id: u32) {
    let Some(entry) = table.entries.get(&id) else {
        return;
    };
    let sub = entry.sub.clone();
    let filters: Vec<Filter> = sub
        .shared_filters()
        .map(|f| Filter::new(f, sub.qos))
        .collect();
    let properties = shared.then(|| SubscribeProperties {
        id: Some(id as usize),
        user_properties: Vec::new(),
    });
    let mut packet = Subscribe::new_many(filters, properties);
    packet.pkid = table.packet_id();
    let pkid = packet.pkid;
    match client.try_request(Request::Subscribe(packet)) {
        Ok(()) => {
            table.pending.insert(pkid, (id, Op::Subscribe));
        }
        Err(e) => {
            let error = format!("could not queue SUBSCRIBE: {e}");
            events::SubscribeFailed {
                route: &sub.route,
                status: &sub.status,
                error: &error,
            }
            .emit();
        }
    }
}

/// Queues an UNSUBSCRIBE of `filters`, numbered. Not queued (the connection is going), the
/// next CONNACK sends it again.
fn unsubscribe_filters(client: &AsyncClient, table: &mut Table, id: u32, filters: Vec<String>) {
    let packet = Unsubscribe {
        pkid: table.packet_id(),
        filters,
        properties: None,
    };
    let pkid = packet.pkid;
    if client.try_request(Request::Unsubscribe(packet)).is_ok() {
        table.pending.insert(pkid, (id, Op::Unsubscribe));
    }
}

/// The connection settled: what waits under an identifier no route holds is acknowledged,
/// counted; what waits for a route that holds one goes on waiting.
fn settle(
    table: &Mutex<Table>,
    client: &AsyncClient,
    shared: &Shared,
    expected: Option<&Identifiers>,
    client_id: &str,
) {
    let mut table = lock(table);
    table.settled = true;
    let gone: Vec<u32> = table
        .unclaimed
        .keys()
        .copied()
        .filter(|id| !expected.is_some_and(|e| e.expects(*id)))
        .collect();
    let epoch = shared.epoch();
    for id in gone {
        let held = table.unclaimed.remove(&id).unwrap_or_default();
        if table.unknown.insert(id) {
            events::UnroutedMessage {
                connection: client_id,
                topic: held.first().map_or("", |d| d.msg.topic.as_str()),
                identifiers: &[id],
                acknowledged: true,
            }
            .emit();
        }
        for d in held {
            events::UnroutedMessage::count();
            ack_now(client, d.token, *epoch);
        }
    }
}

/// Acknowledges a message the poll task settles itself, unless it came on an earlier
/// connection.
fn ack_now(client: &AsyncClient, token: AckToken, epoch: u64) {
    if let Some(p) = token.into_pending() {
        if p.qos != QoS::AtMostOnce && p.epoch == epoch {
            let mut publish = Publish::new("", p.qos, bytes::Bytes::new(), None);
            publish.pkid = p.packet_id;
            let _ = client.try_ack(&publish);
        }
    }
}

/// A delivery whose lane and order key its route's entry sets (`Entry::hand`).
fn delivery(msg: Message, token: AckToken) -> Delivery<AckToken> {
    Delivery {
        lane: 0,
        key: 0,
        msg,
        token,
    }
}
