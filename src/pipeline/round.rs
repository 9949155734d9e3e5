//! What one send of a batch came to (`Round`): which messages were delivered, which go again
//! and which to the dead-letter path, and how long to wait before the next send.

use std::time::Duration;

use super::batcher::{Item, Key};
use crate::events::{self, RouteMetrics};
use crate::flow::{Retry, SinkError};

/// Between tries while the destination refuses the bridge's settings: slow enough not to
/// hammer it, quick enough that mended settings take effect soon.
const CONFIGURATION_BACKOFF: Duration = Duration::from_secs(30);
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
#[error("sent again: an earlier batch of its key failed after this one had gone out")]
struct Behind;

/// What one send of a batch came to.
#[derive(Default)]
pub(super) struct Round {
    pub(super) delivered: Vec<usize>,
    pub(super) retry: Vec<usize>,
    pub(super) dead: Vec<(usize, SinkError)>,
    pub(super) first_error: Option<SinkError>,
    /// A failure in the destination: retries wait with jitter, so that many routes do not
    /// retry a struggling function in step.
    jitter: bool,
    configuration: Option<SinkError>,
    retry_after: Option<Duration>,
}

impl Round {
    /// Sorts a send's outcomes: delivered, to retry, to dead-letter (counting the attempts
    /// the destination failed).
    pub(super) fn of(
        max_attempts: u32,
        pending: &[usize],
        results: Vec<Result<(), SinkError>>,
        failed: &mut [u32],
    ) -> Round {
        let mut round = Round::default();
        for (&i, result) in pending.iter().zip(results) {
            match result {
                Ok(()) => round.delivered.push(i),
                Err(e) => match e.retry() {
                    Retry::Permanent => round.dead.push((i, e)),
                    Retry::Attempts => {
                        failed[i] += 1;
                        match failed[i] >= max_attempts {
                            true => round.dead.push((i, e)),
                            false => round.again(i, e),
                        }
                    }
                    Retry::Retriable | Retry::Configuration => round.again(i, e),
                },
            }
        }
        round
    }

    /// What was delivered of `keys` goes again, behind the retry of an earlier batch of them.
    pub(super) fn go_back(&mut self, items: &[Item], keys: &[Key]) {
        if keys.is_empty() {
            return;
        }
        let delivered = std::mem::take(&mut self.delivered);
        for i in delivered {
            match keys.contains(&items[i].key) {
                true => self.again(i, SinkError::new("behind", Retry::Retriable, Behind)),
                false => self.delivered.push(i),
            }
        }
        self.retry.sort_unstable();
    }

    fn again(&mut self, i: usize, e: SinkError) {
        self.retry.push(i);
        self.jitter |= e.retry() == Retry::Attempts;
        self.retry_after = self.retry_after.max(e.retry_after());
        if e.retry() == Retry::Configuration && self.configuration.is_none() {
            self.configuration = Some(e.clone());
        }
        self.first_error.get_or_insert(e);
    }

    pub(super) fn report(&self, metrics: &RouteMetrics, error: &SinkError, attempt: u32) {
        events::DeliveryRetry {
            metrics,
            count: self.retry.len(),
            kind: error.kind(),
            error: &error.to_string(),
            attempt,
        }
        .emit();
        if let Some(e) = &self.configuration {
            events::ConfigurationRefused {
                route: metrics.route(),
                kind: e.kind(),
                error: &e.to_string(),
                retry_in: CONFIGURATION_BACKOFF,
            }
            .emit();
        }
    }

    /// How long to wait before the next send: the backoff (with jitter after a failure in the
    /// destination), at least `CONFIGURATION_BACKOFF` while the settings are refused, and at
    /// least what the destination asked for.
    pub(super) fn wait(&self, backoff: Duration) -> Duration {
        let mut wait = match self.jitter {
            true => backoff.mul_f64(0.5 + rand::random::<f64>() / 2.0),
            false => backoff,
        };
        if self.configuration.is_some() {
            wait = wait.max(CONFIGURATION_BACKOFF);
        }
        wait.max(self.retry_after.unwrap_or_default().min(MAX_RETRY_AFTER))
    }
}
