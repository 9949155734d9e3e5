//! A route's pipeline: takes what the route's sources receive, batches it by key (`batcher`),
//! delivers the batches (`deliver`) and acknowledges each lane's messages in receive order
//! (`sequencer`) whichever batch finishes first. One task per route; it never blocks a source:
//! sources hand over through an unbounded channel whose content their in-flight windows bound.
//!
//! While the route is paused it starts no batch: what arrives is held, unacknowledged, until
//! resume. On a graceful stop it takes nothing new but delivers and acknowledges everything
//! already received (unless paused: then what it holds stays unacknowledged, for the source to
//! redeliver), then closes the lanes. The delivery guarantee is the source's: a message is
//! acknowledged only after it was delivered or dead-lettered.

use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use super::batcher::{Batcher, Settings};
use super::deliver::{deliver, Context, Done};
use super::sequencer::Sequencer;
use crate::events;
use crate::flow::{Acker, Delivery, Intake};
use crate::rules::Applied;

/// Most deliveries taken from the channel in one turn before batches are formed again.
const INTAKE_BURST: usize = 1024;

pub struct Pipeline<A: Acker> {
    pub ctx: Arc<Context>,
    pub settings: Settings,
    pub intake: Intake<A::Token>,
    /// One per lane, by lane number.
    pub ackers: Vec<A>,
}

/// The pipeline's state while it runs.
struct State<T> {
    batcher: Batcher,
    lanes: Vec<Sequencer<T>>,
    /// Received per lane since the last report.
    received: Vec<(usize, usize)>,
    /// Filtered by a rule since the last report: lane and sequence number.
    filtered: Vec<(usize, u64)>,
}

impl<A: Acker> Pipeline<A> {
    pub async fn run(mut self) {
        let mut state = State {
            batcher: Batcher::new(self.settings),
            lanes: self.ackers.iter().map(|_| Sequencer::default()).collect(),
            received: vec![(0, 0); self.ackers.len()],
            filtered: Vec::new(),
        };
        let mut in_flight = FuturesUnordered::new();
        let mut open = true;
        let shutdown = self.ctx.shutdown.clone();
        let mut stopping = std::pin::pin!(shutdown.cancelled());
        let mut pause = self.ctx.pause.watch();
        loop {
            let now = Instant::now();
            let paused = *pause.borrow_and_update();
            if !paused {
                while let Some(batch) = state.batcher.next_batch(now, !open, in_flight.len()) {
                    in_flight.push(deliver(self.ctx.clone(), batch));
                }
            } else if !open && !state.batcher.is_empty() {
                // Stopping while paused: what is held is not delivered; it stays
                // unacknowledged, for the source to redeliver.
                state.batcher.abandon_all();
                self.give_up(&mut state).await;
            }
            if !open && state.batcher.is_empty() && in_flight.is_empty() {
                break;
            }
            let room = !paused && in_flight.len() < self.settings.concurrency;
            let deadline = state.batcher.deadline().filter(|_| room);
            tokio::select! {
                biased;
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    self.finish(done, &mut state).await
                }
                // Only a resume needs waking for: a pause is seen at the next turn, before any
                // batch starts.
                Ok(()) = pause.changed(), if paused => {}
                _ = &mut stopping, if open => {
                    open = false;
                    self.intake.close();
                    // What the sources handed over before the stop is delivered too.
                    self.take_burst(None, usize::MAX, &mut state).await;
                }
                next = self.intake.recv(), if open => match next {
                    Some(d) => self.take_burst(Some(d), INTAKE_BURST, &mut state).await,
                    None => open = false,
                },
                // Made only when polled: most turns have no deadline (`max_wait = 0`).
                _ = async { tokio::time::sleep_until(deadline.unwrap_or(now)).await },
                    if deadline.is_some() => {}
            }
        }
        for acker in &self.ackers {
            acker.close().await;
        }
        self.ctx.sink.close().await;
        self.ctx.dead_letter.close().await;
    }

    /// Takes `first` and up to `most` deliveries waiting in the channel (all of them), then
    /// reports them and gives up what the batcher set aside.
    async fn take_burst(
        &mut self,
        first: Option<Box<Delivery<A::Token>>>,
        most: usize,
        state: &mut State<A::Token>,
    ) {
        // Now, not the loop's start: the wait for this message may have been long.
        let now = Instant::now();
        let mut taken = 0;
        if let Some(d) = first {
            self.take(*d, state, now);
            taken += 1;
        }
        while taken < most {
            let Ok(d) = self.intake.try_recv() else { break };
            self.take(*d, state, now);
            taken += 1;
        }
        self.report_received(state);
        self.settle_filtered(state).await;
        self.give_up(state).await;
    }

    /// Acknowledges, in their place, the messages a rule filtered.
    async fn settle_filtered(&self, state: &mut State<A::Token>) {
        if state.filtered.is_empty() {
            return;
        }
        let filtered = std::mem::take(&mut state.filtered);
        events::MessagesFiltered {
            metrics: &self.ctx.metrics,
            count: filtered.len(),
        }
        .emit();
        let outcomes = filtered.into_iter().map(|(lane, seq)| (lane, seq, true));
        self.complete(outcomes, state).await;
    }

    fn take(&self, d: Delivery<A::Token>, state: &mut State<A::Token>, now: Instant) {
        let Some(lane) = state.lanes.get_mut(d.lane) else {
            // A source tagged a lane this route does not have: a bug, not the message's fault.
            events::UnknownLane {
                route: &self.ctx.route,
                lane: d.lane,
            }
            .emit();
            return;
        };
        let counts = &mut state.received[d.lane];
        counts.0 += 1;
        counts.1 += d.msg.size();
        let applied = match &self.ctx.rules {
            Some(rules) => rules.apply(d.msg),
            None => Applied::One(d.msg),
        };
        match applied {
            Applied::One(msg) => {
                let seq = lane.push(d.token);
                state.batcher.push(d.lane, seq, msg, d.key, now);
            }
            Applied::Many(msgs) => {
                // Each part in its place; the token goes with the last, so that the message
                // is acknowledged once all of them are settled.
                let parts = msgs.len();
                let mut token = Some(d.token);
                for (i, msg) in msgs.into_iter().enumerate() {
                    let seq = match (i + 1 == parts).then(|| token.take()).flatten() {
                        Some(token) => lane.push(token),
                        None => lane.push_part(),
                    };
                    state.batcher.push(d.lane, seq, msg, d.key, now);
                }
            }
            Applied::Filtered => {
                let seq = lane.push(d.token);
                state.filtered.push((d.lane, seq));
            }
            Applied::Refused(msg, error) => {
                let seq = lane.push(d.token);
                let refused = Some(Box::new(error));
                state
                    .batcher
                    .push_refused(d.lane, seq, msg, d.key, refused, now);
            }
        }
    }

    fn report_received(&self, state: &mut State<A::Token>) {
        for (lane, (count, bytes)) in state.received.iter_mut().enumerate() {
            if *count > 0 {
                events::BatchReceived {
                    metrics: &self.ctx.metrics,
                    lane,
                    count: *count,
                    bytes: *bytes,
                }
                .emit();
                (*count, *bytes) = (0, 0);
            }
        }
    }

    /// A batch is done: free its keys (or, if it gave messages up, abandon them), then
    /// acknowledge what each lane can release.
    async fn finish(&self, done: Done, state: &mut State<A::Token>) {
        match done.outcomes.iter().all(|o| o.2) {
            true => state.batcher.finish(done.keys, done.clean, Instant::now()),
            false => state.batcher.abandon(done.keys),
        }
        let given_up = state.batcher.take_given_up();
        let outcomes = done.outcomes.into_iter();
        let outcomes = outcomes.chain(given_up.iter().map(|i| (i.lane, i.seq, false)));
        self.complete(outcomes, state).await;
    }

    /// Gives up what the batcher set aside for abandoned keys.
    async fn give_up(&self, state: &mut State<A::Token>) {
        let given_up = state.batcher.take_given_up();
        if !given_up.is_empty() {
            let outcomes = given_up.iter().map(|i| (i.lane, i.seq, false));
            self.complete(outcomes, state).await;
        }
    }

    /// Records outcomes and acknowledges what each lane can release.
    async fn complete(
        &self,
        outcomes: impl Iterator<Item = (usize, u64, bool)>,
        state: &mut State<A::Token>,
    ) {
        let mut touched = Vec::new();
        for (lane, seq, ok) in outcomes {
            state.lanes[lane].complete(seq, ok);
            if !touched.contains(&lane) {
                touched.push(lane);
            }
        }
        for lane in touched {
            let released = state.lanes[lane].release();
            if !released.is_empty() {
                events::MessagesReleased {
                    metrics: &self.ctx.metrics,
                    count: released.len(),
                }
                .emit();
                self.ackers[lane].ack(released).await;
            }
        }
    }
}
