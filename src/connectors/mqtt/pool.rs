//! Consumer connections that routes share. Routes that read one broker and deliver to one
//! connection share a pool: its connections carry every such route's SUBSCRIBE, each with the
//! route's own subscription identifier, and each PUBLISH goes to the routes its identifiers
//! name (`consumer`). What shares a connection shares its window, so a destination that stalls
//! must stall only routes that deliver to it: hence one pool per destination connection, whose
//! routes stall together anyway. A route subscribes on the pool's first `consumers`
//! connections (the pool has as many as its largest route asks for).
//!
//! A paused route's subscriptions move to the pool's parking connection, which reads only
//! while its window has room: a paused route holds at most that window, the broker keeps the
//! rest for the share group (as a paused route's own connection does), and the routes still
//! running go on. Resumed, the route subscribes on its connections again and leaves parking.
//!
//! Between two runs of a route (a reload restarting it) its subscriptions stay, and what
//! arrives is held for its next run; a route that does not come back within `GRACE` is
//! withdrawn (UNSUBSCRIBE). Its subscription identifier is drawn from its share group, so it is
//! the same from one start of the bridge to the next: what the broker queued in the session
//! goes to the same route.
//!
//! A broker that offers no subscription identifiers (CONNACK property 41 = 0) gets one
//! connection per route, as before pools (`source`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::consumer::{Connection, ConnectionSpec, Deliveries, Subscription};
use super::options::Endpoint;
use crate::flow::{Budget, ConsumerStatus};

/// How long a stopped route's subscriptions stay on its pool's connections, waiting for its
/// next run, before they are withdrawn.
pub const GRACE: Duration = Duration::from_secs(60);

/// Subscription identifiers run from 1 to this (MQTT v5: a variable byte integer).
const MAX_IDENTIFIER: u32 = 268_435_455;

/// The pools of one broker, by destination connection.
#[derive(Default)]
pub struct Pools {
    pools: Mutex<HashMap<String, Weak<Pool>>>,
    /// The routes' subscription identifiers on this broker.
    ids: Arc<Identifiers>,
    /// Whether the broker offers subscription identifiers, once a CONNACK said.
    identifiers: Arc<watch::Sender<Option<bool>>>,
}

impl Pools {
    /// Whether the broker offers subscription identifiers: waits for the first CONNACK of a
    /// pool's connection; `None` when `stop` came first.
    pub async fn identifiers(&self, stop: &CancellationToken) -> Option<bool> {
        let mut known = self.identifiers.subscribe();
        tokio::select! {
            r = known.wait_for(Option::is_some) => r.ok().and_then(|v| *v),
            _ = stop.cancelled() => None,
        }
    }

    /// What is known now.
    pub fn identifiers_known(&self) -> Option<bool> {
        *self.identifiers.borrow()
    }

    /// The subscription identifier of `route` reading share group `group`, taken from the
    /// group's name (so the same from one start to the next), the next free one when another
    /// route has it. From now on what arrives under it waits for the route.
    pub fn claim(&self, route: &Arc<str>, group: &str) -> u32 {
        let mut ids = self.ids.lock();
        if let Some((g, id)) = ids.get(route) {
            if g == group {
                return *id;
            }
        }
        let mut id = crc32fast::hash(group.as_bytes()) % MAX_IDENTIFIER + 1;
        while ids.iter().any(|(r, (_, i))| *i == id && r != route) {
            id = id % MAX_IDENTIFIER + 1;
        }
        ids.insert(route.clone(), (group.to_owned(), id));
        id
    }
}

/// Which subscription identifier each route holds on a broker: a message that arrives under
/// one of them before its route joined (a session resumed at start, sending what was in
/// flight) waits for it.
#[derive(Default)]
pub struct Identifiers(Mutex<HashMap<Arc<str>, (String, u32)>>);

impl Identifiers {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, (String, u32)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a route holds `id`.
    pub fn expects(&self, id: u32) -> bool {
        self.lock().values().any(|(_, i)| *i == id)
    }

    /// `route` is gone: its identifier `id` is free.
    fn release(&self, route: &str, id: u32) {
        let mut ids = self.lock();
        if ids.get(route).is_some_and(|(_, i)| *i == id) {
            ids.remove(route);
        }
    }
}

/// The routes' part of a pool: a route's subscription and where its messages go.
pub struct Member {
    pub route: Arc<str>,
    /// Its subscription identifier (`Pools::claim`).
    pub id: u32,
    pub filters: Vec<String>,
    pub share_group: String,
    pub qos: QoS,
    pub order: bool,
    /// One per consumer: what the operator sees of the route on each connection.
    pub statuses: Vec<Arc<ConsumerStatus>>,
    pub tx: Deliveries,
}

impl Member {
    fn consumers(&self) -> usize {
        self.statuses.len()
    }

    pub(super) fn subscription(&self, status: Arc<ConsumerStatus>) -> Arc<Subscription> {
        Arc::new(Subscription {
            route: self.route.clone(),
            filters: self.filters.clone(),
            share_group: self.share_group.clone(),
            qos: self.qos,
            order: self.order,
            status,
        })
    }
}

/// A route's place in its pool.
struct Place {
    id: u32,
    member: Member,
    /// Its status on the parking connection (not among the route's consumers).
    parked: Arc<ConsumerStatus>,
    /// Bumped by every run; a run's detach and its expiry act only on their own.
    run: u64,
    attached: bool,
    paused: bool,
}

pub struct Pool {
    endpoint: Endpoint,
    budget: Arc<Budget>,
    /// The destination connection, in client ids: `{prefix}.{name}-{n}`.
    name: String,
    inner: Mutex<Inner>,
    closed: AtomicBool,
}

struct Inner {
    connections: Vec<Connection>,
    parking: Option<Connection>,
    routes: HashMap<Arc<str>, Place>,
}

impl Inner {
    /// The connections, the parking one and the routes, apart (made with the pool, parking is
    /// there until the pool closes).
    fn parts(
        &mut self,
    ) -> (
        &[Connection],
        Option<&Connection>,
        &mut HashMap<Arc<str>, Place>,
    ) {
        (&self.connections, self.parking.as_ref(), &mut self.routes)
    }
}

impl Pool {
    /// The pool of routes on `endpoint`'s broker delivering to `name`, made if there is none;
    /// its connections take shares of `budget`. A pool of the same client ids made for an
    /// earlier endpoint (its broker's settings changed, its routes restarted) is disconnected
    /// first: two clients of one id would take the session from each other.
    pub async fn get(endpoint: &Endpoint, name: &str, budget: &Arc<Budget>) -> Arc<Pool> {
        let first = client_id(endpoint, name, 1);
        let earlier = lock_live().get(&first).and_then(Weak::upgrade);
        if let Some(earlier) = earlier.filter(|p| !p.endpoint.same(endpoint)) {
            earlier.close_now().await;
        }
        let pool = Self::get_or_make(endpoint, name, budget);
        lock_live().insert(first, Arc::downgrade(&pool));
        pool
    }

    fn get_or_make(endpoint: &Endpoint, name: &str, budget: &Arc<Budget>) -> Arc<Pool> {
        let pools = endpoint.pools();
        let mut map = pools.pools.lock().unwrap_or_else(|p| p.into_inner());
        let live = map.get(name).and_then(Weak::upgrade);
        if let Some(pool) = live.filter(|p| !p.closed.load(Ordering::Acquire)) {
            return pool;
        }
        let pool = Arc::new(Pool {
            endpoint: endpoint.clone(),
            budget: budget.clone(),
            name: name.to_owned(),
            inner: Mutex::new(Inner {
                connections: Vec::new(),
                parking: None,
                routes: HashMap::new(),
            }),
            closed: AtomicBool::new(false),
        });
        {
            // The first connection tells whether the broker offers identifiers.
            let mut inner = pool.lock();
            pool.grow(&mut inner, 1);
        }
        map.insert(name.to_owned(), Arc::downgrade(&pool));
        pool
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn client_id(&self, n: usize) -> String {
        client_id(&self.endpoint, &self.name, n)
    }

    /// Connection `number` (from 0), or parking's (`None`).
    fn connection(&self, number: Option<usize>) -> Connection {
        let config = self.endpoint.config();
        let client_id = match number {
            Some(n) => self.client_id(n + 1),
            None => parking_id(self),
        };
        Connection::start(
            &self.endpoint,
            ConnectionSpec {
                // The window's gauges: `route` names the pool, `consumer` the connection.
                label: match number {
                    Some(_) => format!("{}.{}", config.client_id_prefix, self.name).into(),
                    None => client_id.as_str().into(),
                },
                client_id,
                number: number.unwrap_or(0),
                receive_maximum: config.receive_maximum as usize,
                max_inflight_bytes: config.max_inflight_bytes as usize,
                publisher: config.publisher.clone(),
                pause: None,
                shared: true,
                identifiers: Some(self.endpoint.pools().identifiers.clone()),
                expected: Some(self.endpoint.pools().ids.clone()),
                budget: self.budget.clone(),
                counted: true,
            },
        )
    }

    /// At least `n` connections, and the parking one.
    fn grow(&self, inner: &mut Inner, n: usize) {
        while inner.connections.len() < n {
            let c = self.connection(Some(inner.connections.len()));
            inner.connections.push(c);
        }
        if inner.parking.is_none() {
            inner.parking = Some(self.connection(None));
        }
    }

    /// Joins `member` (a run of its route) to the pool: its subscriptions go out (to parking
    /// while `paused`), and what was held for its route since its last run is handed over.
    /// Its lanes: one per consumer, then parking's. Returns the run's number.
    pub fn attach(&self, member: Member, paused: bool) -> u64 {
        let mut inner = self.lock();
        let consumers = member.consumers();
        self.grow(&mut inner, consumers);
        let route = member.route.clone();
        let before = inner.routes.remove(&route);
        let id = member.id;
        let (connections, parking, routes) = inner.parts();
        let parking = parking.expect("grown");
        // An earlier run under another identifier (its share group changed): withdrawn, and
        // what still comes for it (the broker may have queued some) goes to the route.
        if let Some(old) = before.as_ref().filter(|p| p.id != id) {
            for (n, c) in connections.iter().enumerate() {
                if c.carries(old.id) {
                    c.attach(old.id, n % consumers, member.tx.clone());
                    c.withdraw(old.id, false);
                }
            }
            if parking.carries(old.id) {
                parking.attach(old.id, consumers, member.tx.clone());
                parking.withdraw(old.id, false);
            }
        }
        let parked = before
            .as_ref()
            .map(|p| p.parked.clone())
            .unwrap_or_else(|| Arc::new(ConsumerStatus::new(parking_id(self))));
        for (n, c) in connections.iter().enumerate() {
            if n < consumers && !paused {
                c.set(
                    id,
                    member.subscription(member.statuses[n].clone()),
                    n,
                    member.tx.clone(),
                );
            } else if c.carries(id) {
                // An earlier run read through more connections, or the route is paused: what
                // still comes here goes to the route.
                c.attach(id, n % consumers, member.tx.clone());
                c.withdraw(id, false);
            }
        }
        if paused {
            let sub = member.subscription(parked.clone());
            parking.set(id, sub, consumers, member.tx.clone());
        } else if parking.carries(id) {
            parking.attach(id, consumers, member.tx.clone());
            parking.withdraw(id, false);
        }
        let run = before.as_ref().map_or(1, |p| p.run + 1);
        routes.insert(
            route,
            Place {
                id,
                member,
                parked,
                run,
                attached: true,
                paused,
            },
        );
        run
    }

    /// A route paused: its subscriptions move to parking (subscribed there first, so that its
    /// share group never lacks this bridge). Resumed: back to its connections.
    pub fn pause(&self, route: &str, paused: bool) {
        let mut inner = self.lock();
        let (connections, parking, routes) = inner.parts();
        let parking = parking.expect("grown");
        let Some(place) = routes.get_mut(route).filter(|p| p.paused != paused) else {
            return;
        };
        place.paused = paused;
        let member = &place.member;
        let consumers = member.consumers();
        let mine = connections.iter().take(consumers);
        match paused {
            true => {
                let sub = member.subscription(place.parked.clone());
                parking.set(place.id, sub, consumers, member.tx.clone());
                for c in mine {
                    c.withdraw(place.id, false);
                }
            }
            false => {
                for (n, c) in mine.enumerate() {
                    let sub = member.subscription(member.statuses[n].clone());
                    c.set(place.id, sub, n, member.tx.clone());
                }
                // What the broker still sends under it there goes to the route.
                parking.withdraw(place.id, false);
            }
        }
    }

    /// Run `run` of `route` ended: what arrives for it is held for its next run. Connections
    /// where messages were given up connect again, so that the broker sends them again. A route
    /// `gone` for good is withdrawn at once; otherwise, unless the bridge is stopping, if no run
    /// follows within `GRACE`. Returns whether no route is left attached.
    pub fn detach(
        self: &Arc<Self>,
        route: &str,
        run: u64,
        bridge: &CancellationToken,
        gone: bool,
    ) -> bool {
        let mut inner = self.lock();
        let (connections, parking, routes) = inner.parts();
        if let Some(place) = routes.get_mut(route).filter(|p| p.run == run) {
            place.attached = false;
            let all = connections.iter().chain(parking);
            for c in all.clone() {
                c.detach(place.id);
            }
            // A route stopped while paused gave up what it held, on whichever of its
            // connections brought it: they connect again too.
            let paused = place.paused;
            let gave_up = |c: &&Connection| c.stranded() > 0 || (paused && c.carries(place.id));
            for c in all.filter(gave_up) {
                c.reconnect();
            }
            if gone {
                let route = place.member.route.clone();
                drop(inner);
                self.expire(&route, run);
                return self.idle();
            }
            if !bridge.is_cancelled() {
                let (pool, route, bridge) =
                    (self.clone(), place.member.route.clone(), bridge.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = tokio::time::sleep(GRACE) => pool.expire(&route, run),
                        _ = bridge.cancelled() => {}
                    }
                });
            }
        }
        !routes.values().any(|p| p.attached)
    }

    /// Whether no route is attached.
    fn idle(&self) -> bool {
        !self.lock().routes.values().any(|p| p.attached)
    }

    /// Withdraws `route`'s subscriptions if run `run` was its last.
    fn expire(&self, route: &str, run: u64) {
        let mut inner = self.lock();
        let (connections, parking, routes) = inner.parts();
        let Some(place) = routes.get(route).filter(|p| p.run == run && !p.attached) else {
            return;
        };
        for c in connections.iter().chain(parking) {
            c.withdraw(place.id, true);
        }
        self.endpoint.pools().ids.release(route, place.id);
        routes.remove(route);
    }

    /// Disconnects every connection (the sessions kept), when no route is attached.
    pub async fn close(&self) {
        if !self.idle() {
            return;
        }
        self.close_now().await;
    }

    /// Disconnects every connection (the sessions kept).
    async fn close_now(&self) {
        let connections = {
            let mut inner = self.lock();
            self.closed.store(true, Ordering::Release);
            let mut all = std::mem::take(&mut inner.connections);
            all.extend(inner.parking.take());
            all
        };
        for c in connections {
            c.close().await;
        }
    }
}

/// The pools of the process by their first connection's client id, whatever their endpoint.
static LIVE: LazyLock<Mutex<HashMap<String, Weak<Pool>>>> = LazyLock::new(Default::default);

fn lock_live() -> MutexGuard<'static, HashMap<String, Weak<Pool>>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The client id of connection `n` (from 1) of pool `name`: `{prefix}.{name}-{n}`. No route's
/// own consumer has a `.` in its id (route names do not), so the two never meet.
pub fn client_id(endpoint: &Endpoint, name: &str, n: usize) -> String {
    let prefix = &endpoint.config().client_id_prefix;
    format!("{prefix}.{name}-{n}")
}

fn parking_id(pool: &Pool) -> String {
    let prefix = &pool.endpoint.config().client_id_prefix;
    format!("{prefix}.{}-parked", pool.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_stable_in_range_and_apart() {
        let pools = Pools::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let id = pools.claim(&a, "telemetry");
        assert_eq!(id, Pools::default().claim(&a, "telemetry"), "from the name");
        assert_eq!(id, pools.claim(&a, "telemetry"), "the same run after run");
        assert!((1..=MAX_IDENTIFIER).contains(&id));
        // Another route on the same group name (two pools) takes the next one.
        assert_eq!(pools.claim(&b, "telemetry"), id % MAX_IDENTIFIER + 1);
        assert!(pools.ids.expects(id));
        pools.ids.release("a", id);
        assert!(!pools.ids.expects(id));
    }
}
