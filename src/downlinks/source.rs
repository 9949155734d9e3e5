//! What a downlink reads from: a consumer group member of a Kafka or RocketMQ topic that hands
//! out messages in source order per partition/queue and commits the offsets it is given.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use super::message::{Partition, SourceMessage};

#[async_trait]
pub trait Source: Send {
    /// Up to `max` messages, waiting up to `wait` for the first.
    async fn poll(&mut self, max: usize, wait: Duration) -> Vec<SourceMessage>;
    /// Marks every message before these offsets consumed (the next offset per partition).
    async fn commit(&mut self, next: &BTreeMap<Partition, i64>);
    /// Stops (or restarts) fetching, keeping the group membership and offsets.
    async fn set_paused(&mut self, paused: bool);
    /// Keeps the group membership alive while paused, for about `wait`.
    async fn idle(&mut self, wait: Duration);
    /// Commits what was committed last, for good, and leaves the group.
    async fn close(self: Box<Self>);
}

/// The next offset per partition after `messages`.
pub fn next_offsets<'a>(
    messages: impl IntoIterator<Item = &'a SourceMessage>,
) -> BTreeMap<Partition, i64> {
    let mut next = BTreeMap::new();
    for m in messages {
        let slot = next.entry(m.partition.clone()).or_insert(m.offset + 1);
        *slot = (*slot).max(m.offset + 1);
    }
    next
}
