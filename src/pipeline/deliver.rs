//! Delivering one batch: send, retry what failed retriably with exponential backoff, send what
//! failed for good to the dead-letter path. Every message of the batch ends done (delivered or
//! dead-lettered) unless the route stops first: a graceful stop ends the retries, a hard stop
//! (past `shutdown_timeout`) abandons the send too, and those messages stay unacknowledged for
//! the source to redeliver. What a rule refused goes to the dead-letter path unsent. The sink
//! must give one outcome per message; a sink that does not is reported as an error and the
//! messages without an outcome are retried, never dropped.

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::batcher::{Batch, Item, Key, Outcome, Sent};
use super::round::Round;
use crate::events::{self, RouteMetrics};
use crate::flow::{DeadLetterEntry, DeadLetters, Pause, Retry, Sink, SinkError};
use crate::message::{now_ms, Message};
use crate::rules::Rules;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What a route's deliveries share.
pub struct Context {
    pub route: Arc<str>,
    pub metrics: RouteMetrics,
    pub sink: Arc<dyn Sink>,
    /// Sends of a message that the destination may fail (`Retry::Attempts`) before it is
    /// dead-lettered.
    pub max_attempts: u32,
    pub dead_letter: Arc<dyn DeadLetters>,
    /// Messages carrying this user property came from the bridge itself (`[mqtt]
    /// origin_property`): acknowledged without being delivered.
    pub skip_marked: Option<Arc<str>>,
    /// The flow's `schema`, `where` and `transform`, applied as messages are taken.
    pub rules: Option<Arc<Rules>>,
    /// Graceful stop: take nothing new, finish what is being sent, retry no more.
    pub shutdown: CancellationToken,
    /// `shutdown_timeout` passed: give up on sends still pending.
    pub hard_stop: CancellationToken,
    /// While set, no batch starts and no retry goes out.
    pub pause: Arc<Pause>,
}

impl Context {
    /// Waits `d`, then for as long as the route is paused; false when the route began to stop
    /// instead.
    async fn wait(&self, d: Duration) -> bool {
        let waited = async {
            tokio::time::sleep(d).await;
            self.pause.cleared().await;
        };
        tokio::select! {
            _ = waited => true,
            _ = self.shutdown.cancelled() => false,
        }
    }
}

/// A delivered batch: each message's lane, sequence number and whether it is done, and the
/// keys the batch held.
pub struct Done {
    pub outcomes: Vec<(usize, u64, bool)>,
    pub keys: Vec<Key>,
    /// It went through at its first send.
    pub clean: bool,
}

/// A sink returned fewer outcomes than it was given messages.
#[derive(Debug, thiserror::Error)]
#[error("the sink gave no outcome for this message")]
struct NoOutcome;

/// The future of a batch's delivery lives in the pipeline's set of deliveries, one allocation
/// per batch: what only retries, dead letters and ordered windows wait on is boxed apart, so
/// that the common path stays small (under glibc's per-thread cache of small blocks).
pub async fn deliver(ctx: Arc<Context>, batch: Batch) -> Done {
    let Batch {
        items,
        keys,
        outcome,
        after,
    } = batch;
    let mut done = vec![false; items.len()];
    // Attempts each message has failed in the destination (`Retry::Attempts`).
    let mut failed = vec![0u32; items.len()];
    let pending = skip_marked(&ctx, &items, &mut done);
    let mut pending = dead_letter_refused(&ctx, &items, pending, &mut done, &failed).await;
    let mut after = Some(after);
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 0;
    while !pending.is_empty() {
        let msgs: Vec<&Message> = pending.iter().map(|&i| &items[i].msg).collect();
        // A batch following others of its keys is handed to the sink after them, so that a
        // sink that keeps order across batches (an order window above one) takes them in order.
        if attempt == 0 && !handed_after(&ctx, after.as_ref()).await {
            break;
        }
        let mut send = ctx.sink.send(&msgs);
        // The sink takes the batch on the first poll of its send.
        let first = futures::poll!(send.as_mut());
        handed(&outcome);
        let results = match first {
            Poll::Ready(results) => results,
            Poll::Pending => tokio::select! {
                biased;
                // Past the stop's time limit nothing new goes out.
                _ = ctx.hard_stop.cancelled() => break,
                results = send => results,
            },
        };
        let results = checked(&ctx.route, results, msgs.len());
        let mut round = Round::of(ctx.max_attempts, &pending, results, &mut failed);
        stumbled(&outcome, &round);
        if let Some(after) = after.take().filter(|a| !a.is_empty()) {
            match Box::pin(behind(&ctx, after)).await {
                Some(keys) => round.go_back(&items, &keys),
                None => break,
            }
            stumbled(&outcome, &round);
        }
        report_delivered(&ctx, &items, &round.delivered);
        round.delivered.iter().for_each(|&i| done[i] = true);
        if !round.dead.is_empty() && Box::pin(dead_letter(&ctx, &items, &round.dead, &failed)).await
        {
            round.dead.iter().for_each(|(i, _)| done[*i] = true);
        }
        let Some(error) = round.first_error.take() else {
            break;
        };
        attempt += 1;
        round.report(&ctx.metrics, &error, attempt);
        if !Box::pin(ctx.wait(round.wait(backoff))).await {
            break;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        pending = round.retry;
    }
    // Went through at its first send: what later batches of its keys delivered stands.
    let clean = attempt == 0 && done.iter().all(|d| *d);
    if let Some(outcome) = outcome {
        outcome.send_replace(Sent::Done(clean));
    }
    let outcomes = items
        .iter()
        .zip(done)
        .map(|(item, ok)| (item.lane, item.seq, ok))
        .collect();
    Done {
        outcomes,
        keys,
        clean,
    }
}

/// Marks done the messages the bridge published itself (they carry the origin marker);
/// returns the others, to send.
fn skip_marked(ctx: &Context, items: &[Item], done: &mut [bool]) -> Vec<usize> {
    let pending: Vec<usize> = (0..items.len()).collect();
    let Some(marker) = &ctx.skip_marked else {
        return pending;
    };
    let (skip, keep): (Vec<usize>, Vec<usize>) = pending
        .iter()
        .partition(|&&i| items[i].msg.user_property(marker).is_some());
    if !skip.is_empty() {
        skip.iter().for_each(|&i| done[i] = true);
        events::LoopSkipped {
            route: &ctx.route,
            count: skip.len(),
            marker,
        }
        .emit();
    }
    keep
}

/// Sends what a rule refused to the dead-letter path, unsent; returns the others, to send.
async fn dead_letter_refused(
    ctx: &Context,
    items: &[Item],
    mut pending: Vec<usize>,
    done: &mut [bool],
    failed: &[u32],
) -> Vec<usize> {
    let refused: Vec<(usize, SinkError)> = pending
        .iter()
        .filter_map(|&i| Some((i, (**items[i].refused.as_ref()?).clone())))
        .collect();
    if !refused.is_empty() {
        pending.retain(|&i| items[i].refused.is_none());
        if Box::pin(dead_letter(ctx, items, &refused, failed)).await {
            refused.iter().for_each(|(i, _)| done[*i] = true);
        }
    }
    pending
}

/// Waits until the batches of this one's keys sent before it have been handed to the sink (or
/// are done); false at a hard stop.
async fn handed_after(ctx: &Context, after: Option<&Vec<(Key, Outcome)>>) -> bool {
    let Some(after) = after.filter(|a| !a.is_empty()) else {
        return true;
    };
    // Boxed, as `deliver`'s other waits that most batches never reach.
    let waits = async {
        for (_, outcome) in after {
            let mut outcome = outcome.clone();
            tokio::select! {
                biased;
                _ = ctx.hard_stop.cancelled() => return false,
                _ = outcome.wait_for(|s| *s != Sent::Formed) => {}
            }
        }
        true
    };
    Box::pin(waits).await
}

/// Tells the later batches of this one's keys that it was handed to the sink: they may follow.
fn handed(outcome: &Option<tokio::sync::watch::Sender<Sent>>) {
    if let Some(outcome) = outcome {
        outcome.send_if_modified(|sent| {
            let first = *sent == Sent::Formed;
            if first {
                *sent = Sent::Going;
            }
            first
        });
    }
}

/// Tells the later batches of this one's keys, and the batcher, that it will send again: nothing
/// newer of its keys may go out before it.
fn stumbled(outcome: &Option<tokio::sync::watch::Sender<Sent>>, round: &Round) {
    if let Some(outcome) = outcome.as_ref().filter(|_| round.first_error.is_some()) {
        outcome.send_if_modified(|sent| {
            let first = matches!(sent, Sent::Formed | Sent::Going);
            *sent = Sent::Failed;
            first
        });
    }
}

/// Waits for the batches of this one's keys sent before it; returns the keys of those that did
/// not go through at their first send (what this batch delivered of them went ahead of their
/// retry), or `None` at a hard stop.
async fn behind(ctx: &Context, after: Vec<(Key, Outcome)>) -> Option<Vec<Key>> {
    let mut keys = Vec::new();
    for (key, mut outcome) in after {
        let went = tokio::select! {
            biased;
            _ = ctx.hard_stop.cancelled() => return None,
            went = outcome.wait_for(|s| matches!(s, Sent::Done(_))) => {
                went.is_ok_and(|s| *s == Sent::Done(true))
            }
        };
        if !went {
            keys.push(key);
        }
    }
    Some(keys)
}

/// Holds the sink to its contract: exactly one outcome per message.
fn checked(
    route: &str,
    mut results: Vec<Result<(), SinkError>>,
    expected: usize,
) -> Vec<Result<(), SinkError>> {
    if results.len() != expected {
        events::SinkOutcomesMismatch {
            route,
            expected,
            got: results.len(),
        }
        .emit();
        results.truncate(expected);
        results.resize_with(expected, || {
            Err(SinkError::new("no_outcome", Retry::Retriable, NoOutcome))
        });
    }
    results
}

fn report_delivered(ctx: &Context, items: &[Item], delivered: &[usize]) {
    if let Some(oldest) = delivered.iter().map(|&i| items[i].msg.timestamp_ms).min() {
        let oldest_ms = now_ms().saturating_sub(oldest);
        events::BatchDelivered {
            metrics: &ctx.metrics,
            count: delivered.len(),
            oldest_ms,
        }
        .emit();
    }
}

/// Writes the failed messages to the dead-letter destination, in the order they were
/// received, with the attempts each failed; retries until it works or the route stops. True
/// when they are stored.
async fn dead_letter(
    ctx: &Context,
    items: &[Item],
    dead: &[(usize, SinkError)],
    failed: &[u32],
) -> bool {
    let mut entries: Vec<(&Item, &SinkError, u32)> = dead
        .iter()
        .map(|(i, e)| (&items[*i], e, failed[*i].max(1)))
        .collect();
    entries.sort_by_key(|(item, _, _)| item.arrival);
    let entries: Vec<DeadLetterEntry> = entries
        .into_iter()
        .map(|(item, error, attempts)| DeadLetterEntry {
            msg: &item.msg,
            error,
            attempts,
        })
        .collect();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let sent = tokio::select! {
            biased;
            _ = ctx.hard_stop.cancelled() => return false,
            sent = ctx.dead_letter.send(&ctx.route, &entries) => sent,
        };
        match sent {
            Ok(()) => {
                events::DeadLettered {
                    metrics: &ctx.metrics,
                    count: entries.len(),
                    kind: dead[0].1.kind(),
                    error: &dead[0].1.to_string(),
                }
                .emit();
                return true;
            }
            Err(error) => {
                events::DeadLetterFailed {
                    route: &ctx.route,
                    count: entries.len(),
                    error: &error.to_string(),
                }
                .emit();
                if !ctx.wait(backoff).await {
                    return false;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
