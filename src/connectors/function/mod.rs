//! What the function kinds (`http`, `exec`, `scf`) share: a batch becomes function events
//! (`event`) cut to the target's request limit, invoked one after the other; a message too
//! large alone is refused for good, and after a failed invocation the rest of the batch waits,
//! since invoking it would overtake the failed messages.

mod event;

use std::future::Future;
use std::time::Instant;

use crate::events;
use crate::flow::{Retry, SinkError};
use crate::message::Message;

use event::{escaped_len, Chunk, Records};

/// How a target measures a request.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// The largest request, in bytes.
    pub bytes: usize,
    /// The setting that sets it, for the error (`max_request_bytes`).
    pub setting: &'static str,
    /// What the request adds around the event.
    pub overhead: usize,
    /// The event travels as a JSON string inside the request (escaped), not as the body.
    pub escaped: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    #[error("the request with this message alone is {size} bytes, over {setting} ({limit})")]
    TooLarge {
        size: usize,
        limit: usize,
        setting: &'static str,
    },
    #[error(
        "not sent: an earlier invocation of the batch failed, and later ones wait to keep order"
    )]
    NotSent,
}

/// The most of an answer's body quoted in errors and dead letters.
const QUOTED_BODY: usize = 300;

/// The start of an answer's body, as text, for an error message.
pub fn quoted(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(QUOTED_BODY)]);
    let text = text.trim();
    match body.len() > QUOTED_BODY {
        true => format!("{text}..."),
        false => text.to_owned(),
    }
}

/// A request that got no answer: `timeout` or `transport`, and the chain of causes (refused,
/// reset, TLS), without the URL, whose query may hold a key.
pub fn transport_failure(e: reqwest::Error) -> (&'static str, String) {
    let kind = if e.is_timeout() {
        "timeout"
    } else {
        "transport"
    };
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    (kind, text)
}

/// Delivers `batch` as events of route `route`, each through `invoke`, within `limit`; one
/// outcome per message.
pub async fn invoke_in_turn<F, Fut>(
    route: &str,
    batch: &[&Message],
    base64: bool,
    limit: Limit,
    mut invoke: F,
) -> Vec<Result<(), SinkError>>
where
    F: FnMut(Vec<u8>) -> Fut,
    Fut: Future<Output = Result<(), SinkError>>,
{
    let records = Records::new(route, batch, base64);
    let cost = |b: &[u8]| match limit.escaped {
        true => escaped_len(b),
        false => b.len(),
    };
    let chunks = records.chunks(limit.bytes, limit.overhead, cost);
    // The usual case, the whole batch in one request: its event as rendered, not copied.
    if let [Chunk::Fits(range)] = chunks.as_slice() {
        if range.len() == batch.len() {
            let outcome = timed(route, invoke(records.into_event())).await;
            return vec![outcome; batch.len()];
        }
    }
    let mut outcomes: Vec<Result<(), SinkError>> = Vec::with_capacity(batch.len());
    for chunk in chunks {
        match chunk {
            Chunk::TooLarge(_, size) => outcomes.push(Err(SinkError::new(
                "too_large",
                Retry::Permanent,
                FunctionError::TooLarge {
                    size,
                    limit: limit.bytes,
                    setting: limit.setting,
                },
            ))),
            Chunk::Fits(range) => {
                let n = range.len();
                let outcome = timed(route, invoke(records.event(range))).await;
                let failed = outcome.is_err();
                outcomes.extend(std::iter::repeat_n(outcome, n));
                if failed {
                    break;
                }
            }
        }
    }
    let not_sent = SinkError::new("not_sent", Retry::Retriable, FunctionError::NotSent);
    outcomes.resize_with(batch.len(), || Err(not_sent.clone()));
    outcomes
}

/// One invocation, counted and timed.
async fn timed(
    route: &str,
    invocation: impl Future<Output = Result<(), SinkError>>,
) -> Result<(), SinkError> {
    let started = Instant::now();
    let outcome = invocation.await;
    events::FunctionInvoked {
        route,
        ok: outcome.is_ok(),
        elapsed: started.elapsed(),
    }
    .emit();
    outcome
}
