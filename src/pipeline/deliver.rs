//! Delivering one batch: send, retry what failed retriably with exponential backoff, send what
//! failed for good to the dead-letter path. Every message of the batch ends done (delivered or
//! dead-lettered) unless the route stops first: a graceful stop ends the retries, a hard stop
//! (past `shutdown_timeout`) abandons the send too, and those messages stay unacknowledged for
//! the source to redeliver. The sink must give one outcome per message; a sink that does not
//! is reported as an error and the messages without an outcome are retried, never dropped.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::batcher::{Batch, Item, Key};
use super::stats::RouteStats;
use crate::dead_letter::DeadLetter;
use crate::events::{self, RouteMetrics};
use crate::message::{now_ms, Message};
use crate::sinks::{Retry, Sink, SinkError};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What a route's deliveries share.
pub struct Context {
    pub route: Arc<str>,
    pub metrics: RouteMetrics,
    pub sink: Arc<dyn Sink>,
    pub dead_letter: Arc<DeadLetter>,
    /// Graceful stop: take nothing new, finish what is being sent, retry no more.
    pub shutdown: CancellationToken,
    /// `shutdown_timeout` passed: give up on sends still pending.
    pub hard_stop: CancellationToken,
    pub stats: Arc<RouteStats>,
}

impl Context {
    /// Waits `d`; false when the route began to stop instead.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.shutdown.cancelled() => false,
        }
    }
}

/// A delivered batch: each message's lane, sequence number and whether it is done, and the
/// keys the batch held.
pub struct Done {
    pub outcomes: Vec<(usize, u64, bool)>,
    pub keys: Vec<Key>,
}

/// A sink returned fewer outcomes than it was given messages.
#[derive(Debug, thiserror::Error)]
#[error("the sink gave no outcome for this message")]
struct NoOutcome;

pub async fn deliver(ctx: Arc<Context>, batch: Batch) -> Done {
    let Batch { items, keys } = batch;
    let mut done = vec![false; items.len()];
    let mut pending: Vec<usize> = (0..items.len()).collect();
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 0;
    while !pending.is_empty() {
        let msgs: Vec<&Message> = pending.iter().map(|&i| &items[i].msg).collect();
        let results = tokio::select! {
            biased;
            // Past the stop's time limit nothing new goes out.
            _ = ctx.hard_stop.cancelled() => break,
            results = ctx.sink.send(&msgs) => checked(&ctx.route, results, msgs.len()),
        };
        let (mut retry, mut permanent, mut first_error) = (Vec::new(), Vec::new(), None);
        let mut delivered = Vec::new();
        for (&i, result) in pending.iter().zip(results) {
            match result {
                Ok(()) => delivered.push(i),
                Err(e) if e.is_retriable() => {
                    first_error.get_or_insert(e);
                    retry.push(i);
                }
                Err(e) => permanent.push((i, e)),
            }
        }
        report_delivered(&ctx, &items, &delivered);
        delivered.into_iter().for_each(|i| done[i] = true);
        if !permanent.is_empty() && dead_letter(&ctx, &items, &permanent).await {
            permanent.iter().for_each(|(i, _)| done[*i] = true);
        }
        let Some(error) = first_error else { break };
        attempt += 1;
        events::DeliveryRetry {
            route: &ctx.route,
            count: retry.len(),
            kind: error.kind(),
            error: &error.to_string(),
            attempt,
        }
        .emit();
        ctx.stats.retried(retry.len());
        if !ctx.pause(backoff).await {
            break;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        pending = retry;
    }
    let outcomes = items
        .iter()
        .zip(done)
        .map(|(item, ok)| (item.lane, item.seq, ok))
        .collect();
    Done { outcomes, keys }
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
        ctx.stats.delivered(delivered.len());
    }
}

/// Writes the permanently failed messages to the dead-letter destination, in the order they
/// were received, retrying until it works or the route stops. True when they are stored.
async fn dead_letter(ctx: &Context, items: &[Item], failed: &[(usize, SinkError)]) -> bool {
    let mut entries: Vec<(&Item, &SinkError)> =
        failed.iter().map(|(i, e)| (&items[*i], e)).collect();
    entries.sort_by_key(|(item, _)| item.arrival);
    let entries: Vec<(&Message, &SinkError)> = entries
        .into_iter()
        .map(|(item, e)| (&item.msg, e))
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
                    route: &ctx.route,
                    count: entries.len(),
                    kind: failed[0].1.kind(),
                    error: &failed[0].1.to_string(),
                }
                .emit();
                ctx.stats.dead_lettered(entries.len());
                return true;
            }
            Err(error) => {
                events::DeadLetterFailed {
                    route: &ctx.route,
                    count: entries.len(),
                    error: &error.to_string(),
                }
                .emit();
                if !ctx.pause(backoff).await {
                    return false;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
