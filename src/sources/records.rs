//! Sources that read a Kafka or RocketMQ topic as a consumer-group member. A kind that can be
//! read (`Connector::open_reader`) gives a `Reader`; this module runs it for a route: it reads
//! while the route's window has room and it is not paused, hands each message to the pipeline
//! with its partition (or queue) as order key, and commits, per partition, the offset after the
//! last message released by the pipeline's acks: everything before it is delivered or
//! dead-lettered. A message given up at a hard stop is never committed, nor anything of its
//! partition after it, so the group reads them again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::lag::{Ends, Lag};
use crate::events;
use crate::flow::{self, budget, Acker, BoxError, ConsumerStatus, Delivery, IntakeSender, Pause};
use crate::message::{Message, Partition};
use crate::pipeline::{Engine, Source, SourceContext};

/// How long a read waits for the first message.
const POLL_WAIT: Duration = Duration::from_millis(500);
/// The least time between two commits while reading (each is a request to the broker); what
/// is due is committed by the next turn after it, within about `POLL_WAIT`.
const COMMIT_EVERY: Duration = Duration::from_millis(100);

/// Where a group that has no committed offset yet starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    #[default]
    Latest,
    Earliest,
}

/// A consumer-group member of a Kafka or RocketMQ topic: hands out messages in source order
/// per partition or queue and commits the offsets it is given.
#[async_trait]
pub trait Reader: Send {
    /// Up to `max` messages, waiting up to `wait` for the first.
    async fn poll(&mut self, max: usize, wait: Duration) -> Vec<Message>;
    /// Marks every message before these offsets consumed (the next offset per partition).
    async fn commit(&mut self, next: &BTreeMap<Partition, i64>);
    /// Stops (or restarts) fetching, keeping the group membership and offsets.
    async fn set_paused(&mut self, paused: bool);
    /// Keeps the group membership alive while paused, for about `wait`.
    async fn idle(&mut self, wait: Duration);
    /// Commits what was committed last, for good, and leaves the group.
    async fn close(self: Box<Self>);
    /// Why the member reads nothing although it should (a refused login, brokers out of
    /// reach), until the client gets through again; `None` when it has no news of a problem.
    async fn trouble(&mut self) -> Option<String> {
        None
    }
    /// Asks, in a task of its own, for the end of each of `partitions` it can tell (the
    /// offset the next message written there gets), for the lag gauge; `None`: it cannot tell.
    fn ask_ends(&mut self, _partitions: &[Partition]) -> Option<Ends> {
        None
    }
    /// Whether the group gave the member partitions (or queues) to read; `None`: it cannot
    /// tell.
    fn has_partitions(&self) -> Option<bool> {
        None
    }
    /// How long the member may stay without partitions before it counts as not reading: its
    /// session with the group.
    fn session(&self) -> Duration {
        Duration::from_secs(45)
    }
}

/// How often a member's assignment is looked at.
const ASSIGNMENT_EVERY: Duration = Duration::from_secs(1);

/// Opens the reader, retried by the source until it starts or the route stops.
pub type Open = Box<
    dyn Fn() -> futures::future::BoxFuture<'static, Result<Box<dyn Reader>, BoxError>>
        + Send
        + Sync,
>;

/// A message's place in its source, and its size for the window.
#[derive(Debug)]
pub struct Token {
    partition: Partition,
    offset: i64,
    size: usize,
}

type Released = Vec<(Token, bool)>;

/// A lane's acks, handed to the source's task, which commits them.
pub struct RecordAcker(mpsc::UnboundedSender<Released>);

#[async_trait]
impl Acker for RecordAcker {
    type Token = Token;

    async fn ack(&self, released: Released) {
        let _ = self.0.send(released);
    }

    /// The source leaves the group once every lane's acker is gone.
    async fn close(&self) {}
}

/// What the source's task needs besides the reader.
pub struct RecordSpec {
    pub route: Arc<str>,
    /// Ack lanes: a partition always takes the same one, so that a partition whose delivery is
    /// retried holds back the commits of as few others as possible.
    pub lanes: usize,
    pub pause: Arc<Pause>,
    pub status: Arc<ConsumerStatus>,
    /// The window: messages (and their bytes) handed to the pipeline and not yet acked.
    pub max_messages: usize,
    pub max_bytes: usize,
    /// The member's part of the bridge's memory budget, and what wakes it when the budget has
    /// room again.
    pub share: budget::Share,
    pub room: Arc<Notify>,
    pub shutdown: CancellationToken,
}

/// A route's source that reads as a member of `group`, opened by `open` from `with` and the
/// route's name (again after each failure, until it starts or the route stops).
pub fn source<W, F, Fut>(context: &SourceContext, group: &str, with: W, open: F) -> Box<dyn Source>
where
    W: Clone + Send + Sync + 'static,
    F: Fn(W, Arc<str>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Box<dyn Reader>, BoxError>> + Send + 'static,
{
    let route = context.route.clone();
    let open: Open = Box::new(move || Box::pin(open(with.clone(), route.clone())));
    opened_by(open, context, group)
}

/// A route's source that reads as the group member `open` opens (the group's name is what
/// the member shows as its consumer).
pub fn opened_by(open: Open, context: &SourceContext, group: &str) -> Box<dyn Source> {
    let status = Arc::new(ConsumerStatus::group_member(group.to_owned()));
    let room = Arc::new(Notify::new());
    let spec = RecordSpec {
        share: context.budget.share(room.clone()),
        room,
        route: context.route.clone(),
        lanes: context.concurrency,
        pause: context.pause.clone(),
        status,
        max_messages: (context.concurrency + 1) * context.batch_size,
        max_bytes: context.max_bytes,
        shutdown: context.shutdown.clone(),
    };
    Box::new(RecordSource { open, spec })
}

struct RecordSource {
    open: Open,
    spec: RecordSpec,
}

impl Source for RecordSource {
    fn lanes(&self) -> usize {
        self.spec.lanes.max(1)
    }

    fn consumers(&self) -> Vec<Arc<ConsumerStatus>> {
        vec![self.spec.status.clone()]
    }

    /// The reader and the pipeline; ends once the reader left its group.
    fn run(self: Box<Self>, engine: Engine) -> BoxFuture<'static, ()> {
        let (tx, intake) = flow::intake();
        let (ackers, reader) = start(self.open, self.spec, tx);
        let pipeline = engine.pipeline(intake, ackers);
        async move {
            pipeline.run().await;
            let _ = reader.await;
        }
        .boxed()
    }
}

/// Starts reading into `tx`; returns one acker per lane and the task, which ends once the
/// pipeline dropped the ackers (after its last ack) and the reader left its group.
pub fn start(
    open: Open,
    spec: RecordSpec,
    tx: IntakeSender<Token>,
) -> (Vec<RecordAcker>, JoinHandle<()>) {
    let (acks_tx, acks) = mpsc::unbounded_channel();
    let ackers = (0..spec.lanes.max(1))
        .map(|_| RecordAcker(acks_tx.clone()))
        .collect();
    drop(acks_tx);
    let task = Task {
        lag: Lag::new(&spec.route),
        spec,
        tx,
        acks,
        window: (0, 0),
        commits: Commits::default(),
        committed: Instant::now(),
        looked: None,
    };
    (ackers, tokio::spawn(task.run(open)))
}

/// The offsets to commit, from the released acks.
#[derive(Default)]
pub struct Commits {
    /// The next offset per partition, not yet committed.
    due: BTreeMap<Partition, i64>,
    /// Partitions with a message given up: nothing of them is committed any more.
    given_up: BTreeSet<Partition>,
}

impl Commits {
    /// Takes a released run; returns the messages and bytes it frees.
    fn take(&mut self, released: Released) -> (usize, usize) {
        let (count, bytes) = (released.len(), released.iter().map(|(t, _)| t.size).sum());
        for (token, done) in released {
            if !done {
                self.given_up.insert(token.partition);
            } else if !self.given_up.contains(&token.partition) {
                let next = self.due.entry(token.partition).or_insert(0);
                *next = (*next).max(token.offset + 1);
            }
        }
        (count, bytes)
    }

    fn due(&mut self) -> Option<BTreeMap<Partition, i64>> {
        (!self.due.is_empty()).then(|| std::mem::take(&mut self.due))
    }
}

struct Task {
    spec: RecordSpec,
    tx: IntakeSender<Token>,
    acks: mpsc::UnboundedReceiver<Released>,
    /// Messages and bytes handed over and not yet acked.
    window: (usize, usize),
    commits: Commits,
    /// When the last commit went out.
    committed: Instant,
    lag: Lag,
    /// When the assignment was last looked at.
    looked: Option<Instant>,
}

impl Task {
    async fn run(mut self, open: Open) {
        let Some(mut reader) = self.open(&open).await else {
            return;
        };
        events::SourceStarted {
            route: &self.spec.route,
            status: &self.spec.status,
        }
        .emit();
        let mut paused = false;
        let mut trouble = None;
        while !self.spec.shutdown.is_cancelled() {
            self.settle(&mut *reader).await;
            let pause = self.spec.pause.is_paused();
            if pause != paused {
                reader.set_paused(pause).await;
                paused = pause;
            }
            let full = self.window.0 >= self.spec.max_messages
                || (self.window.0 > 0 && self.window.1 >= self.spec.max_bytes)
                || (self.window.0 > 0 && !self.spec.share.has_room());
            if paused || full {
                // Serving the reader keeps the group membership; an ack or the resume
                // ends the wait early.
                let mut resumed = self.spec.pause.watch();
                tokio::select! {
                    _ = reader.idle(POLL_WAIT), if paused => {}
                    Some(run) = self.acks.recv(), if !paused => self.take(run),
                    _ = resumed.changed() => {}
                    _ = self.spec.room.notified(), if !paused => {}
                    _ = self.spec.shutdown.cancelled() => {}
                }
                continue;
            }
            let room = self.spec.max_messages - self.window.0;
            let batch = reader.poll(room, POLL_WAIT).await;
            if batch.is_empty() {
                trouble = self.report(reader.trouble().await, trouble);
            } else if trouble.is_some() {
                trouble = self.report(None, trouble);
            }
            self.hand_over(batch);
        }
        // The pipeline delivers what it holds and acks it; the channel closes after its last
        // ack (or, at a hard stop, once it gave the rest up).
        drop(self.tx);
        while let Some(run) = self.acks.recv().await {
            self.commits.take(run);
        }
        if let Some(due) = self.commits.due() {
            reader.commit(&due).await;
            self.lag.committed(&due);
        }
        reader.close().await;
        events::SourceStopped {
            route: &self.spec.route,
            status: &self.spec.status,
        }
        .emit();
    }

    /// The reader, opened again until it starts or the route stops.
    async fn open(&self, open: &Open) -> Option<Box<dyn Reader>> {
        let mut wait = Duration::from_secs(1);
        loop {
            match open().await {
                Ok(reader) => return Some(reader),
                Err(e) => {
                    let error = format!("cannot start the consumer: {e}");
                    events::SourceFailed {
                        route: &self.spec.route,
                        status: &self.spec.status,
                        error: &error,
                    }
                    .emit();
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.spec.shutdown.cancelled() => return None,
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    /// Shows a change of the reader's health in the status and the log; returns the new one.
    fn report(&self, now: Option<String>, before: Option<String>) -> Option<String> {
        if now == before {
            return now;
        }
        let (route, status) = (&*self.spec.route, &*self.spec.status);
        match &now {
            Some(error) => events::SourceFailed {
                route,
                status,
                error,
            }
            .emit(),
            None => events::SourceRecovered { route, status }.emit(),
        }
        now
    }

    fn take(&mut self, run: Released) {
        let (count, bytes) = self.commits.take(run);
        self.window.0 -= count.min(self.window.0);
        self.window.1 -= bytes.min(self.window.1);
        self.spec.share.give(count * budget::cost(0, 0) + 2 * bytes);
    }

    /// Takes the acks released so far and commits what they allow, at most every
    /// `COMMIT_EVERY`; asks for the partitions' ends when the lag gauge is due.
    async fn settle(&mut self, reader: &mut dyn Reader) {
        while let Ok(run) = self.acks.try_recv() {
            self.take(run);
        }
        self.lag.turn(|partitions| reader.ask_ends(partitions));
        if self
            .looked
            .is_none_or(|at| at.elapsed() >= ASSIGNMENT_EVERY)
        {
            self.looked = Some(Instant::now());
            if let Some(assigned) = reader.has_partitions() {
                events::Assignment {
                    route: &self.spec.route,
                    status: &self.spec.status,
                    assigned,
                    session: reader.session(),
                }
                .emit();
            }
        }
        if self.committed.elapsed() < COMMIT_EVERY {
            return;
        }
        if let Some(due) = self.commits.due() {
            reader.commit(&due).await;
            self.lag.committed(&due);
            self.committed = Instant::now();
        }
    }

    fn hand_over(&mut self, batch: Vec<Message>) {
        let lanes = self.spec.lanes.max(1) as u64;
        for msg in batch {
            let Some(origin) = &msg.origin else { continue };
            if let Some(partition) = self.lag.read(&origin.partition, origin.offset) {
                events::PartitionRead {
                    route: &self.spec.route,
                    status: &self.spec.status,
                    partition: &partition,
                }
                .emit();
            }
            let key = msg.order_key();
            let token = Token {
                partition: origin.partition.clone(),
                offset: origin.offset,
                size: msg.size(),
            };
            self.window.0 += 1;
            self.window.1 += token.size;
            self.spec.share.take(budget::cost(token.size, 0));
            let lane = (key % lanes) as usize;
            let _ = self.tx.send(Box::new(Delivery {
                lane,
                msg,
                token,
                key,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(partition: i32, offset: i64) -> Token {
        Token {
            partition: Partition {
                topic: "t".into(),
                broker: String::new(),
                id: partition,
            },
            offset,
            size: 10,
        }
    }

    #[test]
    fn commits_go_past_what_is_done_and_stop_at_what_was_given_up() {
        let mut c = Commits::default();
        let freed = c.take(vec![
            (token(0, 5), true),
            (token(1, 9), true),
            (token(0, 6), true),
        ]);
        assert_eq!(freed, (3, 30));
        let due = c.due().unwrap();
        assert_eq!(due.values().copied().collect::<Vec<_>>(), [7, 10]);
        assert!(c.due().is_none(), "committed once");
        c.take(vec![
            (token(0, 7), false),
            (token(0, 8), true),
            (token(1, 10), true),
        ]);
        let due = c.due().unwrap();
        assert_eq!(due.len(), 1, "partition 0 gave a message up: {due:?}");
        assert_eq!(due.values().next(), Some(&11));
    }
}
