//! Batching by key: what a route received waits here until it goes out in a batch of at most
//! `batch_size` messages, when the batch is full, when its oldest message has waited `max_wait`,
//! or at once when the route is stopping. At most `concurrency` batches are in delivery.
//!
//! When the route is ordered, each message has the order key its source gave it (MQTT: a hash of
//! the topic; a partition or a queue for sources that have them), and a key has at most
//! `window` batches out, from the moment a batch takes its messages until it is done
//! (delivered, dead-lettered or given up, retries included). With a window of one (routes),
//! nothing later of the key goes out meanwhile, so a retry can never be overtaken. A larger
//! window (an MQTT sink: the next batch is published while the broker acknowledges the last of
//! the one before) links each batch to the ones of its keys before it (`Batch::after`): a batch
//! is handed to the sink only after them, learns whether they went through at their first send,
//! and if not, sends again what it delivered of their keys, after their retry (go-back-N,
//! `deliver`). Once a batch's send has
//! failed, no new batch of its keys goes out until it is done (`Sent::Failed`), so that nothing
//! newer reaches the destination before its retry. Other keys keep flowing, and keys take turns
//! in the order they became ready: a batch holds each key's messages in receive order, key after
//! key.
//!
//! Two topics whose hashes collide share a key and are serialized together, which costs a
//! little concurrency and never order. A key's queue is kept
//! while idle, so that a steady topic does not reallocate it per batch; idle keys are swept
//! once there are many.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::flow::SinkError;
use crate::message::Message;

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub batch_size: usize,
    pub max_wait: Duration,
    pub ordered: bool,
    pub concurrency: usize,
    /// Batches of one key out at once, when ordered.
    pub window: usize,
}

/// A received message, with its place in its lane's ack order and in the route's receive
/// order.
#[derive(Debug)]
pub struct Item {
    pub lane: usize,
    pub seq: u64,
    pub key: Key,
    pub msg: Message,
    /// Counts from 1 across the route's lanes.
    pub arrival: u64,
    /// A rule refused it (`schema_invalid`, `transform_error`): dead-lettered, not sent.
    pub refused: Option<Box<SinkError>>,
}

/// A topic's hash.
pub type Key = u64;

/// How a batch's sending goes, as the later batches of its keys follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Formed, not yet handed to the sink.
    Formed,
    /// Handed to the sink, nothing failed so far.
    Going,
    /// A send failed: the batch will send again, and nothing newer of its keys may go first.
    Failed,
    /// Done: whether it went through at its first send.
    Done(bool),
}

impl Sent {
    /// It had to send again (or will).
    fn stumbled(self) -> bool {
        matches!(self, Sent::Failed | Sent::Done(false))
    }
}

/// How a batch goes, once it is out (window above one).
pub type Outcome = watch::Receiver<Sent>;

/// Messages to deliver together, and the keys they hold busy until done.
#[derive(Debug)]
pub struct Batch {
    pub items: Vec<Item>,
    pub keys: Vec<Key>,
    /// Where the batch tells the later batches of its keys how it went (window above one).
    pub outcome: Option<watch::Sender<Sent>>,
    /// The batches of its keys out before it, and how they went.
    pub after: Vec<(Key, Outcome)>,
}

#[derive(Default)]
struct KeyQueue {
    items: VecDeque<Item>,
    /// Its batches out.
    out: usize,
    /// How the last of them goes (window above one).
    last: Option<Outcome>,
    /// One of its batches had to be sent again: no new batch of the key goes out before the
    /// ones out are done, so that nothing newer overtakes what they send again.
    draining: bool,
    /// A batch of this key gave messages up (the route is stopping): nothing later of the key
    /// may go out, or it would overtake them when the broker redelivers them.
    abandoned: bool,
}

impl KeyQueue {
    /// Whether the key's last batch out failed a send.
    fn last_stumbled(&self) -> bool {
        self.last.as_ref().is_some_and(|o| o.borrow().stumbled())
    }

    /// Whether another batch of the key may go out, `window` at most.
    fn open(&self, window: usize) -> bool {
        self.out < if self.draining { 1 } else { window }
    }

    fn idle(&self) -> bool {
        self.items.is_empty() && self.out == 0 && !self.abandoned
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
        self.push_refused(lane, seq, msg, key, None, now)
    }

    /// Takes message `seq` of `lane`, of order `key`, which a rule may have refused: in its
    /// place in its key's order, to be dead-lettered.
    pub fn push_refused(
        &mut self,
        lane: usize,
        seq: u64,
        msg: Message,
        key: Key,
        refused: Option<Box<SinkError>>,
        now: Instant,
    ) {
        let key = match self.settings.ordered {
            true => key,
            false => 0,
        };
        self.held += 1;
        self.arrivals += 1;
        let held = Item {
            lane,
            seq,
            key,
            msg,
            arrival: self.arrivals,
            refused,
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
        if self.settings.ordered && !queue.open(self.settings.window) {
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
        let mut batch = Batch {
            items: Vec::with_capacity(taken_capacity),
            keys: Vec::new(),
            outcome: None,
            after: Vec::new(),
        };
        let outcome = (s.ordered && s.window > 1).then(|| watch::channel(Sent::Formed));
        // Keys that may have another batch out: ready again once this one is formed.
        let mut again = Vec::new();
        while batch.items.len() < s.batch_size {
            let Some(key) = self.ready.pop_front() else {
                break;
            };
            let Some(queue) = self.keys.get_mut(&key) else {
                continue;
            };
            if s.ordered && queue.out > 0 && queue.last_stumbled() && !queue.draining {
                // Its batch out failed a send: what follows waits for its retry.
                queue.draining = true;
                if !queue.open(s.window) {
                    self.eligible -= queue.items.len();
                    continue;
                }
            }
            let take = queue.items.len().min(s.batch_size - batch.items.len());
            if take == 0 {
                continue;
            }
            batch.items.extend(queue.items.drain(..take));
            self.eligible -= take;
            self.held -= take;
            if !s.ordered {
                match queue.items.is_empty() {
                    true => self.went_idle(key),
                    false => self.ready.push_front(key),
                }
                continue;
            }
            queue.out += 1;
            if let Some((_, rx)) = &outcome {
                batch
                    .after
                    .extend(queue.last.replace(rx.clone()).map(|o| (key, o)));
            }
            match (queue.items.is_empty(), queue.open(s.window)) {
                (false, true) => again.push(key),
                // What is left of the key waits for this batch.
                (false, false) => self.eligible -= queue.items.len(),
                (true, _) => {}
            }
            batch.keys.push(key);
        }
        self.ready.extend(again);
        batch.outcome = outcome.map(|(tx, _)| tx);
        self.deadline = (self.eligible > 0).then(|| now + s.max_wait);
        (!batch.items.is_empty()).then_some(batch)
    }

    /// A batch is done (`clean`: at its first send): its keys may go out again.
    pub fn finish(&mut self, keys: Vec<Key>, clean: bool, now: Instant) {
        let window = self.settings.window;
        for key in keys {
            let Some(queue) = self.keys.get_mut(&key) else {
                continue;
            };
            let was_open = queue.open(window);
            queue.out = queue.out.saturating_sub(1);
            queue.draining |= !clean;
            if queue.out == 0 {
                (queue.last, queue.draining) = (None, false);
            }
            let open = queue.open(window);
            if queue.items.is_empty() {
                if queue.out == 0 {
                    self.went_idle(key);
                }
                continue;
            }
            match (was_open, open) {
                (false, true) => {
                    self.eligible += queue.items.len();
                    self.ready.push_back(key);
                    self.deadline
                        .get_or_insert_with(|| now + self.settings.max_wait);
                }
                (true, false) => {
                    self.eligible -= queue.items.len();
                    self.ready.retain(|k| *k != key);
                    if self.eligible == 0 {
                        self.deadline = None;
                    }
                }
                _ => {}
            }
        }
    }

    /// A batch of `keys` gave messages up: the route is stopping, and what it holds of these
    /// keys, now or later, is given up too (`take_given_up`), never sent after them.
    pub fn abandon(&mut self, keys: Vec<Key>) {
        for key in keys {
            let Some(queue) = self.keys.get_mut(&key) else {
                continue;
            };
            let eligible = queue.open(self.settings.window);
            queue.out = queue.out.saturating_sub(1);
            queue.abandoned = true;
            if eligible {
                self.eligible -= queue.items.len();
            }
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
mod tests;
