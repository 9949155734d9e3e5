//! What every sink is at run time: something that takes a batch of messages and says, for each
//! one, whether it was delivered, and if not, whether trying again can help.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::message::Message;

/// A route's destination, built from its connection and the route's own settings.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Delivers `batch`. Returns exactly one outcome per message, in the batch's order: the
    /// pipeline treats a missing outcome as a failed delivery (and says so loudly), never as a
    /// success.
    async fn send(&self, batch: &[&Message]) -> Vec<Result<(), SinkError>>;
}

/// Whether a failed delivery is worth another try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// It may pass (a broker down, a timeout): the message is held and retried for as long as
    /// it takes.
    Retriable,
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
        }
    }

    pub fn is_retriable(&self) -> bool {
        self.retry == Retry::Retriable
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
