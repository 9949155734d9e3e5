//! Delivering one batch: send, retry what failed retriably with exponential backoff, send what
//! failed for good to the dead-letter path. Returns which messages may be acknowledged: the
//! delivered and the dead-lettered. Only a shutdown makes it give up on a message, which then
//! stays unacknowledged for the broker to redeliver.

use std::sync::Arc;
use std::time::Duration;

use super::start::RouteContext;
use crate::events;
use crate::message::{now_ms, Message};
use crate::mqtt::Delivery;
use crate::sinks::SinkError;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A delivered batch: each delivery with whether it may be acknowledged.
pub type Done = (Vec<Delivery>, Vec<bool>);

pub async fn deliver(ctx: Arc<RouteContext>, batch: Vec<Delivery>) -> Done {
    let mut done = vec![false; batch.len()];
    let mut pending: Vec<usize> = (0..batch.len()).collect();
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 0;
    while !pending.is_empty() {
        let msgs: Vec<&Message> = pending.iter().map(|&i| &batch[i].msg).collect();
        let results = tokio::select! {
            results = ctx.sink.send(&msgs) => results,
            _ = ctx.hard_stop.cancelled() => break,
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
        report_delivered(&ctx.name, &batch, &delivered);
        delivered.into_iter().for_each(|i| done[i] = true);
        if !permanent.is_empty() && dead_letter(&ctx, &batch, &permanent).await {
            permanent.iter().for_each(|(i, _)| done[*i] = true);
        }
        let Some(error) = first_error else { break };
        attempt += 1;
        let error_text = error.to_string();
        events::DeliveryRetry {
            route: &ctx.name,
            count: retry.len(),
            kind: error.kind(),
            error: &error_text,
            attempt,
        }
        .emit();
        if !ctx.pause(backoff).await {
            break;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        pending = retry;
    }
    (batch, done)
}

fn report_delivered(route: &str, batch: &[Delivery], delivered: &[usize]) {
    if let Some(oldest) = delivered.iter().map(|&i| batch[i].msg.timestamp_ms).min() {
        let oldest_ms = now_ms().saturating_sub(oldest);
        events::BatchDelivered {
            route,
            count: delivered.len(),
            oldest_ms,
        }
        .emit();
    }
}

/// Writes the permanently failed messages to the dead-letter destination, retrying until it
/// works or the bridge shuts down. True when they are stored.
async fn dead_letter(
    ctx: &RouteContext,
    batch: &[Delivery],
    failed: &[(usize, SinkError)],
) -> bool {
    let items: Vec<(&Message, &SinkError)> =
        failed.iter().map(|(i, e)| (&batch[*i].msg, e)).collect();
    let mut backoff = FIRST_BACKOFF;
    loop {
        match ctx.dead_letter.send(&ctx.name, &items).await {
            Ok(()) => {
                let error = failed[0].1.to_string();
                events::DeadLettered {
                    route: &ctx.name,
                    count: items.len(),
                    kind: failed[0].1.kind(),
                    error: &error,
                }
                .emit();
                return true;
            }
            Err(error) => {
                events::DeadLetterFailed {
                    route: &ctx.name,
                    count: items.len(),
                    error: &error,
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
