//! Where a flow sends what its sink refused for good: the contract the pipeline writes dead
//! letters through, whatever stores them (`dead_letter.rs`).

use async_trait::async_trait;

use super::{BoxError, SinkError};
use crate::message::Message;

/// A message to dead-letter, with why.
pub struct DeadLetterEntry<'a> {
    pub msg: &'a Message,
    pub error: &'a SinkError,
    /// Sends that failed before the message was given up (1 for a refusal).
    pub attempts: u32,
}

/// The dead-letter destination: `Ok` only once every entry is stored; until then the pipeline
/// holds the messages and tries again.
#[async_trait]
pub trait DeadLetters: Send + Sync {
    async fn send(&self, route: &str, entries: &[DeadLetterEntry<'_>]) -> Result<(), BoxError>;

    /// Ends what a route's own destination runs (its sink's connections) once the route's
    /// flow stopped; the bridge's shared destination is closed by the bridge.
    async fn close(&self) {}
}
