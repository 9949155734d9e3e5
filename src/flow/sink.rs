//! What every sink is at run time: something that takes a batch of messages and says, for each
//! one, whether it was delivered, and if not, whether trying again can help.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::message::Message;

/// A route's destination, built from its connection and the route's own settings.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Delivers `batch`. Returns exactly one outcome per message, in the batch's order: the
    /// pipeline treats a missing outcome as a failed delivery (and says so loudly), never as a
    /// success. A sink whose kind keeps order across batches (`Connector::ORDER_WINDOW` above
    /// one) takes batches in the order their sends are first polled: the pipeline polls a key's
    /// next batch only after the one before it.
    async fn send(&self, batch: &[&Message]) -> Vec<Result<(), SinkError>>;

    /// Ends what the sink runs of its own (the MQTT sink's connections) once its flow has
    /// stopped; the clients of connections are shared and closed with them.
    async fn close(&self) {}
}

/// Whether a failed delivery is worth another try, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The way to the destination failed and may come back (a broker down, a timeout,
    /// throttling): the message is held and retried for as long as it takes.
    Retriable,
    /// The destination took the message and failed on it (a function that ran and failed):
    /// retried up to the route's `max_attempts`, then dead-lettered.
    Attempts,
    /// The bridge's settings are wrong for the destination (credentials refused, a function
    /// that does not exist): said loudly, retried slowly, the message held, since mending the
    /// settings must not have lost it.
    Configuration,
    /// The destination will never take this message: it goes to the dead-letter path.
    Permanent,
}

/// A failed delivery of one message: a short kind for metric labels and dead letters
/// (`timeout`, `too_large`, ...), whether to retry, and the client's error.
#[derive(Clone)]
pub struct SinkError {
    kind: &'static str,
    retry: Retry,
    error: Arc<dyn std::error::Error + Send + Sync>,
    /// The destination asked to be left alone this long (HTTP `Retry-After`).
    retry_after: Option<Duration>,
}

impl SinkError {
    pub fn new(
        kind: &'static str,
        retry: Retry,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        SinkError {
            kind,
            retry,
            error: Arc::new(error),
            retry_after: None,
        }
    }

    /// The same, with the destination's wish not to be retried before `delay` has passed.
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    pub fn retry(&self) -> Retry {
        self.retry
    }

    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Retried without counting attempts (the way there failed, or the settings).
    pub fn is_retriable(&self) -> bool {
        matches!(self.retry, Retry::Retriable | Retry::Configuration)
    }

    /// A short, fixed name for metric labels and the dead-letter `error_kind`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl fmt::Debug for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkError")
            .field("kind", &self.kind)
            .field("retry", &self.retry)
            .field("error", &self.error.to_string())
            .finish()
    }
}

impl std::error::Error for SinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.error)
    }
}
