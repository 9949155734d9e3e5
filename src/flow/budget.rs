//! The bridge's memory budget: one bound on the payload that flows hold received and not yet
//! acknowledged (an MQTT connection's window, a Kafka or RocketMQ member's window), across
//! every flow. Each holder has a reserved share, which it may always fill, so that a stalled
//! flow cannot starve the others; past it, holders take from the common part while it has
//! room. A holder that finds no room stops reading (backpressure, as a full window does) and is
//! woken when room comes back; nothing is dropped. A reader that takes several messages per
//! read books room for a whole read before it reads (`reserve`), and gives back what the read
//! did not use, so that the holders together keep to the budget; one that holds nothing may
//! always read, within its reserved share or past it by one read.
//!
//! Written by hand: it is a pair of counters and a wake-up list, which no library offers in
//! this shape (a semaphore would make a reader wait per message, and the MQTT poll task must
//! never wait).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

/// What each holder may always hold: four 16 KiB messages, or hundreds of small ones.
pub const RESERVE: usize = 64 * 1024;

/// The default budget: fits a 64 MiB unit with the bridge's own cost beside it.
pub const DEFAULT_BUDGET: usize = 48 * 1024 * 1024;

/// What a message's own fields cost beside its payload and topic (its id, properties, order
/// key, the pipeline's bookkeeping), about.
const METADATA: usize = 256;

/// What a message held costs the budget: its payload, the copy a sink makes of it while it is
/// in delivery (a request body, a produce buffer), its topic and its own fields.
pub fn cost(payload: usize, topic: usize) -> usize {
    2 * payload + topic + METADATA
}

pub struct Budget {
    /// Set at start, and again by a reload that changes `memory_budget`.
    total: AtomicUsize,
    /// Bytes holders hold past their reserved share.
    common_used: AtomicUsize,
    /// Holders now; each reserves `RESERVE` of `total`.
    holders: AtomicUsize,
    /// The wake-ups of holders that found no room.
    waiting: Mutex<Vec<Weak<Notify>>>,
}

impl Budget {
    pub fn new(total: usize) -> Arc<Self> {
        Arc::new(Budget {
            total: AtomicUsize::new(total),
            common_used: AtomicUsize::new(0),
            holders: AtomicUsize::new(0),
            waiting: Mutex::new(Vec::new()),
        })
    }

    /// A budget nothing is held against (`mqbridge replay`, tests).
    pub fn unbounded() -> Arc<Self> {
        Self::new(usize::MAX / 2)
    }

    pub fn total(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// Sets a new total (a reload). Holders past a smaller one read no more until
    /// acknowledgements bring them under it; a larger one wakes those that waited for room.
    pub fn resize(&self, total: usize) {
        self.total.store(total, Ordering::Release);
        self.wake_all();
    }

    /// The common part: what the reserved shares leave.
    fn common(&self) -> usize {
        let reserved = self.holders.load(Ordering::Acquire) * RESERVE;
        self.total().saturating_sub(reserved)
    }

    /// Bytes held past the reserved shares.
    pub fn common_used(&self) -> usize {
        self.common_used.load(Ordering::Acquire)
    }

    /// Holders now (each an MQTT consumer connection, a group member or a buffer's reader).
    pub fn holders(&self) -> usize {
        self.holders.load(Ordering::Acquire)
    }

    /// Sets the budget's gauges.
    pub fn show(&self) {
        crate::events::BudgetLevel {
            total: self.total(),
            shared_used: self.common_used(),
            readers: self.holders(),
        }
        .emit();
    }

    /// A new holder's share; `wake` is notified when room comes back after it found none.
    pub fn share(self: &Arc<Self>, wake: Arc<Notify>) -> Share {
        self.holders.fetch_add(1, Ordering::AcqRel);
        Share {
            budget: self.clone(),
            used: AtomicUsize::new(0),
            ahead: AtomicUsize::new(0),
            wake,
        }
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, Vec<Weak<Notify>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Room came back in the common part: every holder that waited may read again.
    fn wake_all(&self) {
        let waiting = std::mem::take(&mut *self.lock_waiting());
        for wake in waiting.iter().filter_map(Weak::upgrade) {
            wake.notify_one();
        }
    }
}

/// One holder's part of the budget: an MQTT consumer connection or a group member.
pub struct Share {
    budget: Arc<Budget>,
    /// Booked: what it holds, and what it set aside for a read (`ahead`).
    used: AtomicUsize,
    /// Set aside for the next read and not yet used by what it brought.
    ahead: AtomicUsize,
    wake: Arc<Notify>,
}

impl Share {
    /// Books `bytes` just received, from what was set aside for the read first.
    pub fn take(&self, bytes: usize) {
        let mut from_ahead = 0;
        let _ = self
            .ahead
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |ahead| {
                from_ahead = ahead.min(bytes);
                Some(ahead - from_ahead)
            });
        self.book(bytes - from_ahead);
    }

    fn book(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let before = self.used.fetch_add(bytes, Ordering::AcqRel);
        let over = over(before + bytes) - over(before);
        if over > 0 {
            self.budget.common_used.fetch_add(over, Ordering::AcqRel);
        }
    }

    /// Gives back `bytes` (acknowledged, or given up).
    pub fn give(&self, bytes: usize) {
        let before = self.used.fetch_sub(bytes, Ordering::AcqRel);
        let freed = over(before) - over(before.saturating_sub(bytes));
        if freed > 0 {
            let was = self.budget.common_used.fetch_sub(freed, Ordering::AcqRel);
            if was >= self.budget.common() {
                self.budget.wake_all();
            }
        }
    }

    /// Before a read of up to `most` messages of about `each` bytes: gives back what the last
    /// read did not use, and sets aside room for as many as the budget has room for, which it
    /// returns (a holder that holds nothing gets one, within its reserved share or past it).
    /// 0: it must not read; its wake-up is notified once room comes back.
    pub fn reserve(&self, most: usize, each: usize) -> usize {
        self.release();
        let used = self.used.load(Ordering::Acquire);
        let n = (1..=most).rev().find(|n| self.fits(used, n * each));
        let n = match n {
            Some(n) => n,
            None if used == 0 => 1,
            None => {
                self.wait_for_room();
                // Room may have come back before the wake-up was listed.
                match self.fits(used, each) {
                    true => 1,
                    false => return 0,
                }
            }
        };
        self.book(n * each);
        self.ahead.store(n * each, Ordering::Release);
        n
    }

    /// Whether `more` bytes fit beside the `used` it holds.
    fn fits(&self, used: usize, more: usize) -> bool {
        let budget = &self.budget;
        used + more <= RESERVE
            || budget.common_used() + over(used + more) - over(used) <= budget.common()
    }

    /// Gives back what was set aside for a read that will not come (the reader stops).
    pub fn release(&self) {
        let unused = self.ahead.swap(0, Ordering::AcqRel);
        if unused > 0 {
            self.give(unused);
        }
    }

    /// Whether the holder may read more: within its reserved share, or the common part has
    /// room. When it may not, its wake-up is notified once room comes back.
    pub fn has_room(&self) -> bool {
        if self.used.load(Ordering::Acquire) < RESERVE {
            return true;
        }
        let budget = &self.budget;
        if budget.common_used() < budget.common() {
            return true;
        }
        self.wait_for_room();
        // Room may have come back before the wake-up was listed.
        budget.common_used() < budget.common()
    }

    /// Lists its wake-up for when room comes back (once).
    fn wait_for_room(&self) {
        let mut waiting = self.budget.lock_waiting();
        let listed = waiting
            .iter()
            .any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&self.wake)));
        if !listed {
            waiting.push(Arc::downgrade(&self.wake));
        }
    }

    /// What the holder holds now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let held = self.used.load(Ordering::Acquire);
        if held > 0 {
            self.give(held);
        }
        self.budget.holders.fetch_sub(1, Ordering::AcqRel);
        self.budget.wake_all();
    }
}

/// What of `used` lies past the reserved share.
fn over(used: usize) -> usize {
    used.saturating_sub(RESERVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_always_has_its_reserve_and_shares_the_rest() {
        // Two holders: 128 KiB reserved, 64 KiB in common.
        let budget = Budget::new(3 * RESERVE);
        let (a, b) = (
            budget.share(Arc::new(Notify::new())),
            budget.share(Arc::new(Notify::new())),
        );
        a.take(RESERVE);
        assert!(a.has_room(), "the common part is free");
        a.take(RESERVE);
        assert_eq!(budget.common_used(), RESERVE);
        assert!(!a.has_room(), "the common part is spent");
        // The other holder still has its reserve, a stalled `a` notwithstanding.
        assert!(b.has_room());
        b.take(RESERVE - 1);
        assert!(b.has_room());
        b.take(1);
        assert!(!b.has_room());
        a.give(RESERVE);
        assert_eq!(budget.common_used(), 0);
        assert!(a.has_room() && b.has_room());
    }

    #[tokio::test]
    async fn a_holder_that_found_no_room_is_woken_when_room_comes_back() {
        let budget = Budget::new(3 * RESERVE);
        let wake = Arc::new(Notify::new());
        let a = budget.share(Arc::new(Notify::new()));
        let b = budget.share(wake.clone());
        a.take(2 * RESERVE);
        b.take(RESERVE);
        assert!(!b.has_room());
        let woken = wake.notified();
        a.give(2 * RESERVE);
        tokio::time::timeout(std::time::Duration::from_secs(1), woken)
            .await
            .expect("woken");
        assert!(b.has_room());
        drop((a, b));
        assert_eq!(budget.common_used(), 0);
        assert_eq!(budget.holders.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_resized_budget_stops_or_wakes_its_holders() {
        // One holder: 64 KiB reserved, 64 KiB in common, all of it used.
        let budget = Budget::new(2 * RESERVE);
        let wake = Arc::new(Notify::new());
        let a = budget.share(wake.clone());
        a.take(2 * RESERVE);
        assert!(!a.has_room());
        let woken = wake.notified();
        budget.resize(4 * RESERVE);
        tokio::time::timeout(std::time::Duration::from_secs(1), woken)
            .await
            .expect("woken by the larger budget");
        assert!(a.has_room());
        budget.resize(RESERVE);
        assert!(!a.has_room(), "past the smaller budget");
        a.give(RESERVE + 1);
        assert!(a.has_room(), "within its reserve again");
    }
}
