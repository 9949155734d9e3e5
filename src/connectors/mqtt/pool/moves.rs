//! A route's subscriptions moving between connections (paused to parking and back, a new run
//! on other connections or under another identifier, a pool replaced): make before break. The
//! old subscriptions stay until the broker granted the new ones, since a share group without a
//! member on the broker loses what is published in the gap (mosquitto answers it "no matching
//! subscribers"). A connection that is down subscribes only once it is back, so the gap would
//! otherwise last as long as its reconnect.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::stop::Ready;
use super::Pool;

/// A subscription to withdraw: the connection (a number, or parking's `None`), the identifier,
/// and the turn it stood at when the move was decided.
type Off = (Option<usize>, u32, u64);

impl Pool {
    /// Withdraws the subscriptions `off` names (connection and identifier) once `ready` says
    /// their replacements are granted; what still arrives under them goes where the caller
    /// attached it. One set or withdrawn again meanwhile (a later pause, resume or run) is left
    /// as that move leaves it. A pool that closes drops what is pending.
    pub(super) fn withdraw_when(
        self: &Arc<Self>,
        connections: &super::Connections<'_>,
        off: Vec<(Option<usize>, u32)>,
        ready: Ready,
    ) {
        let off: Vec<Off> = off
            .into_iter()
            .filter_map(|(n, id)| Some((n, id, connections.at(n)?.turn(id)?)))
            .collect();
        if off.is_empty() {
            return;
        }
        if ready() {
            for &(n, id, turn) in &off {
                if let Some(c) = connections.at(n) {
                    c.withdraw_at(id, turn);
                }
            }
            return;
        }
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            // Done when the pool is gone, every subscription was overtaken, or the new ones
            // are granted.
            let pending = || {
                let Some(pool) = pool.upgrade() else {
                    return false;
                };
                if pool.closed.load(Ordering::Acquire) {
                    return false;
                }
                let inner = pool.lock();
                let connections = inner.connections();
                let live = off
                    .iter()
                    .any(|&(n, id, turn)| connections.at(n).and_then(|c| c.turn(id)) == Some(turn));
                live && !ready()
            };
            until(|| !pending(), None).await;
            let Some(pool) = pool.upgrade() else { return };
            let inner = pool.lock();
            let connections = inner.connections();
            for &(n, id, turn) in &off {
                if let Some(c) = connections.at(n) {
                    c.withdraw_at(id, turn);
                }
            }
        });
    }
}

/// Waits until `done` says so, asking at growing intervals (20 ms to 1 s), or until `limit`
/// has passed; returns whether it did.
pub async fn until(done: impl Fn() -> bool, limit: Option<Duration>) -> bool {
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
