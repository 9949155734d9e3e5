//! Batching by key: what a route received waits here until it goes out in a batch of at most
//! `batch_size` messages, when the batch is full, when its oldest message has waited `max_wait`,
//! or at once when the route is stopping. At most `concurrency` batches are in delivery.
//!
//! When the route is ordered, each message has the order key its source gave it (MQTT: a hash of
//! the topic; a partition or a queue for sources that have them), and a key is held busy from the moment
//! a batch takes its messages until that batch is done (delivered, dead-lettered or given up,
//! retries included): nothing later of the key goes out meanwhile, so a retry can never be
//! overtaken. Other keys keep flowing, and keys take turns in the order they became ready: a
//! batch holds each key's messages in receive order, key after key.
//!
//! Two topics whose hashes collide share a key and are serialized together, which costs a
//! little concurrency and never order. A key's queue is kept
//! while idle, so that a steady topic does not reallocate it per batch; idle keys are swept
//! once there are many.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

use tokio::time::Instant;

use crate::message::Message;

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub batch_size: usize,
    pub max_wait: Duration,
    pub ordered: bool,
    pub concurrency: usize,
}

/// A received message, with its place in its lane's ack order and in the route's receive
/// order.
#[derive(Debug)]
pub struct Item {
    pub lane: usize,
    pub seq: u64,
    pub msg: Message,
    /// Counts from 1 across the route's lanes.
    pub arrival: u64,
}

/// A topic's hash.
pub type Key = u64;

/// Messages to deliver together, and the keys they hold busy until done.
#[derive(Debug)]
pub struct Batch {
    pub items: Vec<Item>,
    pub keys: Vec<Key>,
}

#[derive(Default)]
struct KeyQueue {
    items: VecDeque<Item>,
    busy: bool,
    /// A batch of this key gave messages up (the route is stopping): nothing later of the key
    /// may go out, or it would overtake them when the broker redelivers them.
    abandoned: bool,
}

impl KeyQueue {
    fn idle(&self) -> bool {
        self.items.is_empty() && !self.busy && !self.abandoned
    }
}

/// Idle keys kept before a sweep.
const MAX_IDLE_KEYS: usize = 1024;
/// An idle key's queue keeps at most this much room; a burst's larger buffer is freed.
const IDLE_QUEUE_CAPACITY: usize = 64;

/// Keys are hashes already: hashing them again would only cost time.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub struct Batcher {
    settings: Settings,
    keys: HashMap<Key, KeyQueue, BuildHasherDefault<KeyHasher>>,
    /// Keys whose queue is empty and not busy.
    idle: usize,
    /// Keys with messages that may go out now, in the order they became ready.
    ready: VecDeque<Key>,
    /// Messages of ready keys.
    eligible: usize,
    /// Every message held.
    held: usize,
    /// Messages taken in so far.
    arrivals: u64,
    /// Messages of abandoned keys, to be given up.
    given_up: Vec<Item>,
    /// When the eligible messages are due, even if too few to fill a batch.
    deadline: Option<Instant>,
}

impl Batcher {
    pub fn new(settings: Settings) -> Self {
        Batcher {
            settings,
            keys: HashMap::default(),
            idle: 0,
            ready: VecDeque::new(),
            eligible: 0,
            held: 0,
            arrivals: 0,
            given_up: Vec::new(),
            deadline: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.held == 0 && self.given_up.is_empty()
    }

    /// When a partial batch becomes due (`None` when nothing may go out).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Takes message `seq` of `lane`, of order `key`.
    pub fn push(&mut self, lane: usize, seq: u64, msg: Message, key: Key, now: Instant) {
        let key = match self.settings.ordered {
            true => key,
            false => 0,
        };
        self.held += 1;
        self.arrivals += 1;
        let held = Item {
            lane,
            seq,
            msg,
            arrival: self.arrivals,
        };
        if self.settings.ordered && self.keys.get(&key).is_some_and(|q| q.abandoned) {
            self.held -= 1;
            self.given_up.push(held);
            return;
        }
        let queue = match self.keys.entry(key) {
            Entry::Occupied(kept) => {
                let queue = kept.into_mut();
                if queue.idle() {
                    self.idle -= 1;
                }
                queue
            }
            Entry::Vacant(new) => new.insert(KeyQueue::default()),
        };
        if queue.busy {
            queue.items.push_back(held);
            return;
        }
        if queue.items.is_empty() {
            self.ready.push_back(key);
        }
        queue.items.push_back(held);
        self.eligible += 1;
        self.deadline
            .get_or_insert_with(|| now + self.settings.max_wait);
    }

    /// The next batch to deliver, if one is due and there is room for it beside the
    /// `in_flight` batches already out. `closing` sends whatever may go out.
    pub fn next_batch(&mut self, now: Instant, closing: bool, in_flight: usize) -> Option<Batch> {
        let s = self.settings;
        let due =
            closing || self.eligible >= s.batch_size || self.deadline.is_some_and(|d| now >= d);
        if self.eligible == 0 || in_flight >= s.concurrency || !due {
            return None;
        }
        let taken_capacity = self.eligible.min(s.batch_size);
        let mut taken: Vec<Item> = Vec::with_capacity(taken_capacity);
        let mut keys = Vec::new();
        while taken.len() < s.batch_size {
            let Some(key) = self.ready.pop_front() else {
                break;
            };
            let Some(queue) = self.keys.get_mut(&key) else {
                continue;
            };
            let take = queue.items.len().min(s.batch_size - taken.len());
            taken.extend(queue.items.drain(..take));
            self.eligible -= take;
            self.held -= take;
            if s.ordered {
                // What is left of the key waits for this batch.
                queue.busy = true;
                self.eligible -= queue.items.len();
                keys.push(key);
            } else if !queue.items.is_empty() {
                self.ready.push_front(key);
            } else {
                self.went_idle(key);
            }
        }
        self.deadline = (self.eligible > 0).then(|| now + s.max_wait);
        Some(Batch { items: taken, keys })
    }

    /// A batch is done: its keys may go out again.
    pub fn finish(&mut self, keys: Vec<Key>, now: Instant) {
        for key in keys {
            let Some(queue) = self.keys.get_mut(&key) else {
                continue;
            };
            queue.busy = false;
            if queue.items.is_empty() {
                self.went_idle(key);
                continue;
            }
            self.eligible += queue.items.len();
            self.ready.push_back(key);
            self.deadline
                .get_or_insert_with(|| now + self.settings.max_wait);
        }
    }

    /// A batch of `keys` gave messages up: the route is stopping, and what it holds of these
    /// keys, now or later, is given up too (`take_given_up`), never sent after them.
    pub fn abandon(&mut self, keys: Vec<Key>) {
        for key in keys {
            let Some(queue) = self.keys.get_mut(&key) else {
                continue;
            };
            queue.busy = false;
            queue.abandoned = true;
            self.held -= queue.items.len();
            self.given_up.extend(queue.items.drain(..));
        }
    }

    /// The route stops while paused: everything held is given up (`take_given_up`), and so is
    /// whatever of its keys arrives later; batches out finish as they would.
    pub fn abandon_all(&mut self) {
        let keys: Vec<Key> = self.keys.keys().copied().collect();
        self.abandon(keys);
        self.ready.clear();
        self.eligible = 0;
        self.deadline = None;
    }

    /// The messages given up since the last call.
    pub fn take_given_up(&mut self) -> Vec<Item> {
        std::mem::take(&mut self.given_up)
    }

    /// `key` has nothing held and nothing out: keep its queue for the topic's next message, or
    /// sweep the idle keys when there are many.
    fn went_idle(&mut self, key: Key) {
        if let Some(queue) = self.keys.get_mut(&key) {
            if queue.items.capacity() > IDLE_QUEUE_CAPACITY {
                queue.items = VecDeque::new();
            }
        }
        self.idle += 1;
        if self.idle > MAX_IDLE_KEYS {
            self.keys.retain(|_, q| !q.idle());
            self.idle = 0;
        }
    }

    /// Keys held in memory, idle ones included.
    #[cfg(test)]
    fn keys_kept(&self) -> usize {
        self.keys.len()
    }
}

/// The order key of `topic` as an MQTT source makes it (with a fixed hasher), for tests.
#[cfg(test)]
pub(super) fn order_key(topic: &str) -> Key {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(topic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::tests::sample;

    fn settings(batch_size: usize, max_wait_ms: u64, ordered: bool) -> Settings {
        Settings {
            batch_size,
            max_wait: Duration::from_millis(max_wait_ms),
            ordered,
            concurrency: 4,
        }
    }

    /// Hands `b` message `seq` on `topic`, from lane 0.
    fn push(b: &mut Batcher, seq: u64, topic: &str, now: Instant) {
        b.push(0, seq, sample(topic), order_key(topic), now);
    }

    fn seqs(batch: &Batch) -> Vec<u64> {
        batch.items.iter().map(|i| i.seq).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_goes_at_once_a_partial_one_after_max_wait() {
        let mut b = Batcher::new(settings(3, 100, false));
        let t0 = Instant::now();
        for seq in 0..4 {
            push(&mut b, seq, "a", t0);
        }
        let first = b.next_batch(t0, false, 0).expect("a full batch is due");
        assert_eq!(seqs(&first), [0, 1, 2]);
        assert!(
            b.next_batch(t0, false, 1).is_none(),
            "one left, not due yet"
        );
        let due = b.deadline().expect("the leftover has a deadline");
        assert_eq!(due, t0 + Duration::from_millis(100));
        tokio::time::advance(Duration::from_millis(99)).await;
        assert!(b.next_batch(Instant::now(), false, 1).is_none());
        tokio::time::advance(Duration::from_millis(1)).await;
        let rest = b
            .next_batch(Instant::now(), false, 1)
            .expect("due after max_wait");
        assert_eq!(seqs(&rest), [3]);
        assert!(b.is_empty() && b.deadline().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_starts_with_the_first_message() {
        let mut b = Batcher::new(settings(10, 50, true));
        let t0 = Instant::now();
        push(&mut b, 0, "a", t0);
        tokio::time::advance(Duration::from_millis(30)).await;
        push(&mut b, 1, "b", Instant::now());
        assert_eq!(b.deadline(), Some(t0 + Duration::from_millis(50)));
        tokio::time::advance(Duration::from_millis(20)).await;
        let batch = b.next_batch(Instant::now(), false, 0).unwrap();
        assert_eq!(seqs(&batch), [0, 1]);
    }

    #[test]
    fn closing_sends_what_is_there_and_concurrency_is_bounded() {
        let mut b = Batcher::new(settings(100, 60_000, false));
        let now = Instant::now();
        push(&mut b, 0, "a", now);
        assert!(b.next_batch(now, false, 0).is_none());
        assert!(
            b.next_batch(now, true, 4).is_none(),
            "four batches out: no room"
        );
        assert_eq!(seqs(&b.next_batch(now, true, 3).unwrap()), [0]);
    }

    #[test]
    fn an_ordered_key_has_one_batch_out_at_a_time() {
        let mut b = Batcher::new(settings(2, 0, true));
        let now = Instant::now();
        push(&mut b, 0, "a", now);
        push(&mut b, 1, "a", now);
        push(&mut b, 2, "a", now);
        push(&mut b, 3, "b", now);
        let first = b.next_batch(now, false, 0).unwrap();
        assert_eq!(seqs(&first), [0, 1]);
        assert_eq!(first.keys.len(), 1);
        // "a" is busy: its third message waits; "b" goes meanwhile.
        let second = b.next_batch(now, false, 1).unwrap();
        assert_eq!(seqs(&second), [3]);
        assert!(b.next_batch(now, false, 2).is_none());
        push(&mut b, 4, "a", now);
        assert!(b.next_batch(now, true, 2).is_none(), "a is still busy");
        b.finish(second.keys, now);
        assert!(b.next_batch(now, true, 1).is_none());
        b.finish(first.keys, now);
        let third = b.next_batch(now, false, 0).unwrap();
        assert_eq!(seqs(&third), [2, 4], "the key's order holds");
        b.finish(third.keys, now);
        assert!(b.is_empty());
    }

    #[test]
    fn an_abandoned_key_gives_up_what_it_holds_and_what_comes_later() {
        let mut b = Batcher::new(settings(1, 0, true));
        let now = Instant::now();
        push(&mut b, 0, "a", now);
        push(&mut b, 1, "a", now);
        push(&mut b, 2, "b", now);
        let first = b.next_batch(now, true, 0).unwrap();
        assert_eq!(seqs(&first), [0]);
        b.abandon(first.keys);
        push(&mut b, 3, "a", now);
        let given_up: Vec<u64> = b.take_given_up().iter().map(|i| i.seq).collect();
        assert_eq!(given_up, [1, 3]);
        assert_eq!(seqs(&b.next_batch(now, true, 0).unwrap()), [2]);
        assert!(b.next_batch(now, true, 0).is_none());
        assert!(b.is_empty());
    }

    #[test]
    fn idle_keys_are_swept_once_there_are_many() {
        let mut b = Batcher::new(settings(1, 0, true));
        let now = Instant::now();
        for seq in 0..3 * MAX_IDLE_KEYS as u64 {
            push(&mut b, seq, &format!("vehicle/{seq}"), now);
            let batch = b.next_batch(now, false, 0).unwrap();
            b.finish(batch.keys, now);
        }
        assert!(b.is_empty());
        assert!(
            b.keys_kept() <= MAX_IDLE_KEYS + 1,
            "{} keys kept",
            b.keys_kept()
        );
    }

    #[test]
    fn an_unordered_route_mixes_keys_in_receive_order() {
        let mut b = Batcher::new(settings(3, 0, false));
        let now = Instant::now();
        for (seq, topic) in ["a", "b", "a", "c", "a"].iter().enumerate() {
            push(&mut b, seq as u64, topic, now);
        }
        assert_eq!(seqs(&b.next_batch(now, false, 0).unwrap()), [0, 1, 2]);
        assert_eq!(seqs(&b.next_batch(now, false, 1).unwrap()), [3, 4]);
    }

    #[test]
    fn many_keys_fill_one_batch() {
        let mut b = Batcher::new(settings(64, 0, true));
        let now = Instant::now();
        for seq in 0..64 {
            push(&mut b, seq, &format!("t/{}", seq % 16), now);
        }
        let batch = b.next_batch(now, false, 0).unwrap();
        assert_eq!(batch.items.len(), 64);
        assert_eq!(batch.keys.len(), 16);
        for t in 0..16 {
            let topic = format!("t/{t}");
            let of_topic: Vec<u64> = batch
                .items
                .iter()
                .filter(|i| i.msg.topic == topic)
                .map(|i| i.seq)
                .collect();
            assert_eq!(of_topic.len(), 4);
            assert!(
                of_topic.windows(2).all(|w| w[0] < w[1]),
                "{topic}: {of_topic:?}"
            );
        }
    }
}
