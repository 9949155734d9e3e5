//! How routes leave a pool: a run that ends (its subscriptions wait for the next, or are
//! withdrawn), a pool replaced by one of other client ids (each route's subscriptions move
//! over as it joins there), and the pool's disconnect.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::moves::until;
use super::{Pool, GRACE};
use crate::connectors::mqtt::consumer::{Connection, Deliveries};

/// Whether a route's new subscriptions are granted.
pub type Ready = Arc<dyn Fn() -> bool + Send + Sync>;

impl Pool {
    /// `route` reads elsewhere now (the pool that replaced this one, or connections of its
    /// own): what this pool holds or still receives for it goes to `tx` on lane `lane`, and
    /// its subscriptions here are withdrawn once `subscribed` says the new ones are granted
    /// (or after `GRACE`): until then the broker has a member of the route's share group to
    /// send to, where a gap would lose what was published in it. Once no route is left and
    /// nothing is held, the pool disconnects.
    pub fn hand_over(
        self: &Arc<Self>,
        route: &str,
        tx: &Deliveries,
        lane: usize,
        subscribed: Ready,
    ) {
        let mut inner = self.lock();
        let (connections, parking, routes) = inner.parts();
        let Some(place) = routes.remove(route) else {
            return;
        };
        for c in connections.iter().chain(parking) {
            if c.carries(place.id) {
                c.attach(place.id, lane, tx.clone());
            }
        }
        drop(inner);
        let (pool, route) = (self.clone(), route.to_owned());
        tokio::spawn(async move {
            until(|| subscribed(), Some(GRACE)).await;
            let empty = {
                let mut inner = pool.lock();
                let (connections, parking, routes) = inner.parts();
                for c in connections.iter().chain(parking) {
                    if c.carries(place.id) {
                        c.withdraw(place.id, false);
                    }
                }
                routes.is_empty()
            };
            pool.endpoint.pools().ids.release(&route, place.id);
            if empty {
                pool.close_when_drained().await;
            }
        });
    }

    /// Disconnects once every connection is answered and holds nothing, or after `GRACE`.
    async fn close_when_drained(self: Arc<Self>) {
        let drained = || {
            let inner = self.lock();
            let all = inner.connections.iter().chain(inner.parking.as_ref());
            all.map(Connection::settled)
                .all(|(quiet, _, _, held)| quiet && held == 0)
        };
        until(drained, Some(GRACE)).await;
        self.close_now().await;
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
    pub(super) async fn close_now(&self) {
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
