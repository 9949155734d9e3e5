//! The way out of a disk buffer, as the source of the route's second part: it reads the
//! buffer in the order it was written, while the route's window has room and it is not paused,
//! hands each message to the pipeline with its order key (its topic's, or its partition's or
//! queue's, as the route's source gave it), and removes each batch once the pipeline acked
//! every message of it delivered or dead-lettered. What is not removed when the route stops
//! (or the bridge is killed) is read again at the next start: a duplicate at worst, never a
//! loss. What it holds read and not yet acked is booked in the bridge's memory budget, as a
//! Kafka or RocketMQ member's window is: it reads no more while the budget has no room.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::batch::Stored;
use super::store::Store;
use crate::events;
use crate::flow::{self, budget, Acker, ConsumerStatus, Delivery, IntakeSender, Pause};
use crate::message::now_ms;
use crate::pipeline::{Engine, Source, SourceContext};

/// How long an idle reader waits before looking at the buffer again (a write wakes it sooner).
const IDLE: Duration = Duration::from_millis(500);
/// The least time between two removals (each is a transaction with an fsync).
const REMOVE_EVERY: Duration = Duration::from_millis(50);
/// How often the level gauges are set.
const LEVEL_EVERY: Duration = Duration::from_secs(1);

/// A message's batch in the buffer and its size, for the window.
#[derive(Debug)]
pub struct Token {
    batch: u64,
    size: usize,
}

type Released = Vec<(Token, bool)>;

pub struct BufferAcker(mpsc::UnboundedSender<Released>);

#[async_trait]
impl Acker for BufferAcker {
    type Token = Token;

    async fn ack(&self, released: Released) {
        let _ = self.0.send(released);
    }

    async fn close(&self) {}
}

pub struct BufferSource {
    store: Arc<Store>,
    route: Arc<str>,
    ordered: bool,
    lanes: usize,
    pause: Arc<Pause>,
    shutdown: CancellationToken,
    max_messages: usize,
    max_bytes: usize,
    /// Its part of the memory budget; `room` is woken when the budget has room again.
    share: budget::Share,
    room: Arc<Notify>,
}

impl BufferSource {
    pub fn new(store: Arc<Store>, context: &SourceContext) -> Self {
        let room = Arc::new(Notify::new());
        BufferSource {
            share: context.budget.share(room.clone()),
            room,
            store,
            route: context.route.clone(),
            ordered: context.ordered,
            lanes: context.concurrency.max(1),
            pause: context.pause.clone(),
            shutdown: context.shutdown.clone(),
            max_messages: (context.concurrency + 1) * context.batch_size,
            max_bytes: context.max_bytes,
        }
    }
}

impl Source for BufferSource {
    fn lanes(&self) -> usize {
        self.lanes
    }

    /// The route's consumers are its source's; the buffer shows in the route's `buffer`.
    fn consumers(&self) -> Vec<Arc<ConsumerStatus>> {
        Vec::new()
    }

    fn run(self: Box<Self>, engine: Engine) -> BoxFuture<'static, ()> {
        let (tx, intake) = flow::intake();
        let (acks_tx, acks) = mpsc::unbounded_channel();
        let ackers = (0..self.lanes)
            .map(|_| BufferAcker(acks_tx.clone()))
            .collect();
        drop(acks_tx);
        let pipeline = engine.pipeline(intake, ackers);
        let level = events::BufferLevel::new(&self.route);
        let task = Reader {
            source: *self,
            tx: Some(tx),
            acks,
            window: (0, 0),
            next: 0,
            opens: 0,
            done: Vec::new(),
            pending: HashMap::new(),
            level,
        };
        let reader = tokio::spawn(task.run());
        async move {
            pipeline.run().await;
            let _ = reader.await;
        }
        .boxed()
    }
}

struct Reader {
    source: BufferSource,
    /// Dropped when the route stops: the pipeline then delivers what it holds and closes.
    tx: Option<IntakeSender<Token>>,
    acks: mpsc::UnboundedReceiver<Released>,
    /// Messages and bytes handed over and not yet acked.
    window: (usize, usize),
    /// The number to read from next.
    next: u64,
    /// The store's `opens` when it was last read: after it opened the file again, removals
    /// that were not yet fsynced may be back, and the reader reads from the start again.
    opens: u64,
    /// Batches whose every message is delivered, not yet removed.
    done: Vec<u64>,
    /// Batches handed over, with how many of their messages are not yet acked done; a batch
    /// with a message given up (a hard stop) leaves, to be read again at the next start.
    pending: HashMap<u64, usize>,
    level: events::BufferLevel,
}

impl Reader {
    async fn run(mut self) {
        let mut removed = tokio::time::Instant::now();
        let mut synced = tokio::time::Instant::now();
        let mut shown: Option<tokio::time::Instant> = None;
        self.opens = self.source.store.opens();
        let shutdown = self.source.shutdown.clone();
        while !shutdown.is_cancelled() {
            while let Ok(run) = self.acks.try_recv() {
                self.take(run);
            }
            if !self.done.is_empty() && removed.elapsed() >= REMOVE_EVERY {
                self.remove().await;
                removed = tokio::time::Instant::now();
            }
            if synced.elapsed() >= LEVEL_EVERY {
                let store = self.source.store.clone();
                let _ = tokio::task::spawn_blocking(move || store.sync()).await;
                synced = tokio::time::Instant::now();
            }
            if self.source.store.opens() != self.opens {
                self.opens = self.source.store.opens();
                self.next = 0;
            }
            if shown.is_none_or(|at| at.elapsed() >= LEVEL_EVERY) {
                self.show().await;
                shown = Some(tokio::time::Instant::now());
            }
            let paused = self.source.pause.is_paused();
            let full = self.window.0 >= self.source.max_messages
                || (self.window.0 > 0 && self.window.1 >= self.source.max_bytes)
                || (self.window.0 > 0 && !self.source.share.has_room());
            if paused || full {
                let mut resumed = self.source.pause.watch();
                tokio::select! {
                    Some(run) = self.acks.recv() => self.take(run),
                    _ = resumed.changed() => {}
                    _ = self.source.room.notified(), if !paused => {}
                    _ = tokio::time::sleep(IDLE) => {}
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
            let store = self.source.store.clone();
            let written = store.data.notified();
            let room = self.source.max_messages - self.window.0;
            let bytes = self.source.max_bytes.saturating_sub(self.window.1);
            let from = self.next;
            let reading = store.clone();
            let read = tokio::task::spawn_blocking(move || reading.read(from, room, bytes)).await;
            let read = read
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            let stored = read.unwrap_or_else(|error| {
                let route = &self.source.route;
                events::BufferReadFailed {
                    route,
                    error: &error,
                }
                .emit();
                Vec::new()
            });
            if stored.is_empty() {
                tokio::select! {
                    _ = written => {}
                    Some(run) = self.acks.recv() => self.take(run),
                    _ = tokio::time::sleep(IDLE) => {}
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
            self.hand_over(stored).await;
        }
        // The pipeline delivers what it holds and acks it; the channel closes after its last
        // ack (or, at a hard stop, once it gave the rest up).
        self.tx = None;
        while let Some(run) = self.acks.recv().await {
            self.take(run);
        }
        self.remove().await;
        let store = self.source.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.sync()).await;
        self.show().await;
    }

    fn take(&mut self, run: Released) {
        for (token, done) in run {
            self.window.0 -= 1.min(self.window.0);
            self.window.1 -= token.size.min(self.window.1);
            self.source.share.give(budget::cost(token.size, 0));
            self.settle(token.batch, done);
        }
    }

    /// One message of `batch` left the pipeline, `done` or given up.
    fn settle(&mut self, batch: u64, done: bool) {
        let Some(left) = self.pending.get_mut(&batch) else {
            return;
        };
        *left = left.saturating_sub(1);
        let left = *left;
        if !done {
            // Given up at a hard stop: the whole batch stays, to be read at the next start.
            self.pending.remove(&batch);
        } else if left == 0 {
            self.pending.remove(&batch);
            self.done.push(batch);
        }
    }

    async fn remove(&mut self) {
        if self.done.is_empty() {
            return;
        }
        let batches = std::mem::take(&mut self.done);
        let store = self.source.store.clone();
        let removed = tokio::task::spawn_blocking(move || {
            let error = match store.remove(&batches) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            // On a full disk even a removal may find no page to write: once the file holds
            // only what was delivered, it starts anew.
            if error.is_disk_full() && store.reset_if_delivered(&batches).unwrap_or(false) {
                return Ok(());
            }
            Err((error, batches))
        })
        .await;
        if let Ok(Err((e, batches))) = removed {
            // Kept to be removed by the next turn; until then they are only held longer.
            let error = e.to_string();
            events::BufferRemoveFailed {
                route: &self.source.route,
                error: &error,
            }
            .emit();
            self.done = batches;
        }
    }

    async fn show(&self) {
        let store = self.source.store.clone();
        let oldest = tokio::task::spawn_blocking(move || store.oldest())
            .await
            .ok()
            .flatten();
        let level = self.source.store.level();
        let age = oldest.map_or(0, |at| now_ms().saturating_sub(at));
        self.level.show(level.bytes, level.messages, age);
    }

    async fn hand_over(&mut self, stored: Vec<Stored>) {
        let lanes = self.source.lanes as u64;
        let (mut current, mut skipping) = (None, false);
        for Stored {
            seq,
            batch,
            batch_len,
            size,
            message,
        } in stored
        {
            self.next = seq + 1;
            if current != Some(batch) {
                current = Some(batch);
                // Read again after the file was opened again: a batch in delivery, or
                // delivered and not yet removed, is not handed over twice.
                let delivered = self.done.contains(&batch);
                skipping = delivered || self.pending.contains_key(&batch);
                if !skipping {
                    self.pending.insert(batch, batch_len);
                }
            }
            if skipping {
                continue;
            }
            let msg = match message {
                Ok(msg) => msg,
                Err((damage, bytes)) => {
                    let error = damage.to_string();
                    events::BufferDamaged {
                        route: &self.source.route,
                        seq,
                        error: &error,
                    }
                    .emit();
                    let store = self.source.store.clone();
                    let kept = tokio::task::spawn_blocking(move || store.set_aside(seq, &bytes));
                    // Kept aside (or, failing that, reported): it counts as settled.
                    let _ = kept.await;
                    self.settle(batch, true);
                    continue;
                }
            };
            let key = match self.source.ordered {
                true => msg.order_key(),
                false => seq,
            };
            let Some(tx) = &self.tx else { return };
            self.window.0 += 1;
            self.window.1 += size;
            self.source.share.take(budget::cost(size, 0));
            let _ = tx.send(Box::new(Delivery {
                lane: (key % lanes) as usize,
                msg,
                token: Token { batch, size },
                key,
            }));
        }
    }
}
