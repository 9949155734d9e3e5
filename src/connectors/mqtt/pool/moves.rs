//! A route's subscriptions moving between connections (paused to parking and back, a new run
//! on other connections or under another identifier, a pool replaced, a subscription an
//! earlier run left in a connection's session): make before break. The
//! old subscriptions stay until the broker granted the new ones, since a share group without a
//! member on the broker loses what is published in the gap (mosquitto answers it "no matching
//! subscribers"). A connection that is down subscribes only once it is back, so the gap would
//! otherwise last as long as its reconnect.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{Identifiers, Inner, Pool};

/// A subscription to withdraw: the connection (a number, or parking's `None`), the identifier,
/// and the turn it stood at when the move was decided.
type Off = (Option<usize>, u32, u64);

/// The subscriptions a route moved from, waiting to be withdrawn.
struct Move {
    route: Arc<str>,
    off: Vec<Off>,
}

impl Pool {
    /// Withdraws the subscriptions `off` names (connection and identifier), which `route` moved
    /// from, once the broker granted the route's subscription where it reads now (`moved`):
    /// what still arrives under them goes where the caller attached it. Asked again at each
    /// check, so that a later move (paused again, another share group) is what is waited for.
    /// One set or withdrawn again meanwhile is left as that move leaves it. A pool that closes
    /// drops what is pending.
    pub(super) fn withdraw_when(
        self: &Arc<Self>,
        inner: &Inner,
        off: Vec<(Option<usize>, u32)>,
        route: &Arc<str>,
    ) {
        let connections = inner.connections();
        let off = off
            .into_iter()
            .filter_map(|(n, id)| Some((n, id, connections.at(n)?.turn(id)?)))
            .collect();
        let ids = &self.endpoint.pools().ids;
        let mut pending = Move {
            route: route.clone(),
            off,
        };
        if pending.step(inner, ids) {
            return;
        }
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            let done = || {
                let Some(pool) = pool.upgrade() else {
                    return true;
                };
                if pool.closed.load(Ordering::Acquire) {
                    return true;
                }
                let ids = pool.endpoint.pools().ids.clone();
                let inner = pool.lock();
                pending.step(&inner, &ids)
            };
            until(done, None).await;
        });
    }

    /// Messages under `id` arrived on connection `number` (parking's: `None`) without an entry
    /// there: a subscription of the route holding `id` that the connection's session kept
    /// from an earlier run (one paused when the bridge stopped, or stopped while it moved).
    /// They go to the route, and that subscription is withdrawn once the route's own is
    /// granted where it reads.
    pub(super) fn adopt(self: &Arc<Self>, number: Option<usize>, id: u32) {
        let inner = self.lock();
        let Some(place) = inner.routes.values().find(|p| p.id == id) else {
            return; // not joined yet: its run adopts them (`attach`)
        };
        let connections = inner.connections();
        // One the route reads through has its entry, and took them already.
        let Some(c) = connections.at(number).filter(|c| !c.carries(id)) else {
            return;
        };
        let member = &place.member;
        let consumers = member.consumers();
        let (lane, status) = match number {
            Some(n) => (n % consumers, member.statuses[n % consumers].clone()),
            None => (consumers, place.parked.clone()),
        };
        let sub = || member.subscription(status);
        if c.adopt(id, sub, lane, member.tx.clone()) {
            let route = member.route.clone();
            self.withdraw_when(&inner, vec![(number, id)], &route);
        }
    }
}

impl Move {
    /// Withdraws what may go now; returns whether nothing is left to wait for. What a later
    /// move set or withdrew again is dropped. While the route is in the pool, all goes once its
    /// subscription is granted where it reads. Once it left: what is under an identifier no
    /// route holds goes now (the route was removed, or its share group changed); the rest
    /// waits for whoever withdraws it (a pool handing the route over withdraws it once the new
    /// pool has it).
    fn step(&mut self, inner: &Inner, ids: &Identifiers) -> bool {
        let connections = inner.connections();
        let current =
            |&(n, id, turn): &Off| connections.at(n).and_then(|c| c.turn(id)) == Some(turn);
        self.off.retain(current);
        let go: Vec<Off> = match inner.routes.get(&*self.route) {
            Some(_) if inner.moved(&self.route) => std::mem::take(&mut self.off),
            Some(_) => Vec::new(),
            None => {
                let (go, stay) = self.off.iter().partition(|o| !ids.expects(o.1));
                self.off = stay;
                go
            }
        };
        for (n, id, turn) in go {
            if let Some(c) = connections.at(n) {
                c.withdraw_at(id, turn);
            }
        }
        self.off.is_empty()
    }
}

impl Inner {
    /// Whether `route`'s subscription is granted where it reads now: on parking while paused,
    /// else on its connections. A route not in the pool has none.
    fn moved(&self, route: &str) -> bool {
        let Some(place) = self.routes.get(route) else {
            return false;
        };
        let consumers = place.member.consumers();
        self.connections()
            .granted(place.id, place.paused, consumers)
    }
}

/// Waits until `done` says so, asking at growing intervals (20 ms to 1 s), or until `limit`
/// has passed; returns whether it did.
pub async fn until(mut done: impl FnMut() -> bool, limit: Option<Duration>) -> bool {
    let deadline = limit.map(|l| tokio::time::Instant::now() + l);
    let mut wait = Duration::from_millis(20);
    loop {
        if done() {
            return true;
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return false;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(1));
    }
}
