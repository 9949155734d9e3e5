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
//! Every such move withdraws the old subscriptions only once the new ones are granted (`moves`).
//!
//! Between two runs of a route (a reload restarting it) its subscriptions stay, and what
//! arrives is held for its next run; a route that does not come back within `GRACE` is
//! withdrawn (UNSUBSCRIBE). Its subscription identifier is drawn from its share group, so it is
//! the same from one start of the bridge to the next: what the broker queued in the session
//! goes to the same route.
//!
//! A broker that offers no subscription identifiers (CONNACK property 41 = 0) gets one
//! connection per route, as before pools (`source`).

mod ids;
mod moves;
mod stop;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;

use super::consumer::{Connection, ConnectionSpec, Deliveries, Stray, Subscription};
use super::options::Endpoint;
use crate::flow::{Budget, ConsumerStatus};
pub use ids::{Identifiers, Pools};
pub use moves::until;
pub use stop::Ready;

/// How long a stopped route's subscriptions stay on its pool's connections, waiting for its
/// next run, before they are withdrawn.
pub const GRACE: Duration = Duration::from_secs(60);

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
    /// The pools of the same destination on endpoints this one replaced, when their client
    /// ids differ (a reload changed `client_id_prefix`): each route that joins here is
    /// withdrawn there, and what they still hold or receive for it comes here.
    earlier: Mutex<Vec<Arc<Pool>>>,
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

    fn connections(&self) -> Connections<'_> {
        Connections {
            all: &self.connections,
            parking: self.parking.as_ref(),
        }
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
        // Of another prefix: it stays connected until its routes moved here, since its
        // sessions hold their share groups' subscriptions, and the broker would go on sending
        // them a share of every message.
        let renamed: Vec<Arc<Pool>> = lock_live()
            .values()
            .filter_map(Weak::upgrade)
            .filter(|p| p.name == name && !p.endpoint.same(endpoint))
            .filter(|p| !p.closed.load(Ordering::Acquire))
            .collect();
        let pool = Self::get_or_make(endpoint, name, budget);
        lock_live().insert(first, Arc::downgrade(&pool));
        let mut earlier = pool.earlier.lock().unwrap_or_else(|p| p.into_inner());
        for p in renamed {
            if !earlier.iter().any(|e| Arc::ptr_eq(e, &p)) {
                earlier.push(p);
            }
        }
        drop(earlier);
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
            earlier: Mutex::new(Vec::new()),
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
    fn connection(self: &Arc<Self>, number: Option<usize>) -> Connection {
        let pool = Arc::downgrade(self);
        let stray: Stray = Arc::new(move |id| {
            if let Some(pool) = pool.upgrade() {
                tokio::spawn(async move { pool.adopt(number, id) });
            }
        });
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
                stray: Some(stray),
            },
        )
    }

    /// At least `n` connections, and the parking one.
    fn grow(self: &Arc<Self>, inner: &mut Inner, n: usize) {
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
    /// Its lanes: one per consumer, then parking's. Returns the run's number, and what tells
    /// whether the broker granted its subscription.
    pub fn attach(self: &Arc<Self>, member: Member, paused: bool) -> (u64, Ready) {
        let mut inner = self.lock();
        let consumers = member.consumers();
        self.grow(&mut inner, consumers);
        let route = member.route.clone();
        let before = inner.routes.remove(&route);
        let id = member.id;
        let (connections, parking, routes) = inner.parts();
        let parking = parking.expect("grown");
        let tx = member.tx.clone();
        // What stops carrying the route, once the new subscriptions are granted.
        let mut off = Vec::new();
        // An earlier run under another identifier (its share group changed): what still comes
        // for it (the broker may have queued some) goes to the route.
        if let Some(old) = before.as_ref().filter(|p| p.id != id) {
            for (n, c) in connections.iter().enumerate() {
                c.attach(old.id, n % consumers, tx.clone());
                off.push((Some(n), old.id));
            }
            parking.attach(old.id, consumers, tx.clone());
            off.push((None, old.id));
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
                    tx.clone(),
                );
            } else {
                // An earlier run read through more connections, or the route is paused: what
                // still comes here goes to the route.
                let status = member.statuses[n % consumers].clone();
                c.adopt(
                    id,
                    || member.subscription(status),
                    n % consumers,
                    tx.clone(),
                );
                off.push((Some(n), id));
            }
        }
        if paused {
            let sub = member.subscription(parked.clone());
            parking.set(id, sub, consumers, tx.clone());
        } else {
            let sub = || member.subscription(parked.clone());
            parking.adopt(id, sub, consumers, tx.clone());
            off.push((None, id));
        }
        // Granted on any of the pool's connections: the share group has a member here.
        let subscribed = granted_on(connections.iter().chain(Some(parking)), id);
        let run = before.as_ref().map_or(1, |p| p.run + 1);
        routes.insert(
            route.clone(),
            Place {
                id,
                member,
                parked,
                run,
                attached: true,
                paused,
            },
        );
        self.withdraw_when(&inner, off, &route);
        drop(inner);
        let earlier = {
            let mut earlier = self.earlier.lock().unwrap_or_else(|p| p.into_inner());
            earlier.retain(|p| !p.closed.load(Ordering::Acquire));
            earlier.clone()
        };
        // Pools this one replaced let the route go once its subscription here is granted.
        for pool in earlier {
            pool.hand_over(&route, &tx, consumers, subscribed.clone());
        }
        (run, subscribed)
    }

    /// A route paused: its subscriptions move to parking; resumed: back to its connections.
    /// Each time the old ones go only once the broker granted the new ones, so that its share
    /// group never lacks this bridge.
    pub fn pause(self: &Arc<Self>, route: &str, paused: bool) {
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
        // What the broker still sends under the old ones goes to the route.
        let off = match paused {
            true => {
                let sub = member.subscription(place.parked.clone());
                parking.set(place.id, sub, consumers, member.tx.clone());
                (0..consumers).map(|n| (Some(n), place.id)).collect()
            }
            false => {
                for (n, c) in mine.enumerate() {
                    let sub = member.subscription(member.statuses[n].clone());
                    c.set(place.id, sub, n, member.tx.clone());
                }
                vec![(None, place.id)]
            }
        };
        let route = place.member.route.clone();
        self.withdraw_when(&inner, off, &route);
    }
}

/// A pool's connections, each by its number, parking's by `None`.
pub(super) struct Connections<'a> {
    all: &'a [Connection],
    parking: Option<&'a Connection>,
}

impl Connections<'_> {
    pub(super) fn at(&self, n: Option<usize>) -> Option<&Connection> {
        match n {
            Some(n) => self.all.get(n),
            None => self.parking,
        }
    }

    /// Whether `id` is granted where a route of `consumers` reads: on parking while `paused`,
    /// else on one of its connections.
    fn granted(&self, id: u32, paused: bool, consumers: usize) -> bool {
        match paused {
            true => self.parking.is_some_and(|c| c.is_granted(id)),
            false => self.all.iter().take(consumers).any(|c| c.is_granted(id)),
        }
    }
}

/// Whether the broker granted `id` on any of `on`.
fn granted_on<'a>(on: impl IntoIterator<Item = &'a Connection>, id: u32) -> Ready {
    let grants: Vec<_> = on.into_iter().map(|c| c.granted(id)).collect();
    Arc::new(move || grants.iter().any(|granted| granted()))
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
