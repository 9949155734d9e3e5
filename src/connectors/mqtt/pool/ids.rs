//! The pools of one broker and the routes' subscription identifiers on it: drawn from each
//! route's share group, so the same from one start to the next.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Pool;

/// Subscription identifiers run from 1 to this (MQTT v5: a variable byte integer).
const MAX_IDENTIFIER: u32 = 268_435_455;

/// The pools of one broker, by destination connection.
#[derive(Default)]
pub struct Pools {
    pub(super) pools: Mutex<HashMap<String, Weak<Pool>>>,
    /// The routes' subscription identifiers on this broker.
    pub(super) ids: Arc<Identifiers>,
    /// Whether the broker offers subscription identifiers, once a CONNACK said.
    pub(super) identifiers: Arc<watch::Sender<Option<bool>>>,
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

    /// The pools open now.
    pub fn live(&self) -> Vec<Arc<Pool>> {
        let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.values().filter_map(Weak::upgrade).collect()
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
    pub(super) fn release(&self, route: &str, id: u32) {
        let mut ids = self.lock();
        if ids.get(route).is_some_and(|(_, i)| *i == id) {
            ids.remove(route);
        }
    }
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
