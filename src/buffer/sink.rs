//! The way into a disk buffer, as the sink of the route's first part: a batch is appended and
//! fsynced in one transaction, and only then reported delivered, so that the source
//! acknowledges it. When the buffer holds `max_size`, or its disk is full, a send waits for
//! room (the window fills and the source stops reading, as with a slow sink); another failed
//! write is a retriable failure, so the messages are held at their source and nothing is
//! dead-lettered.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::batch::Chunks;
use super::codec;
use super::store::{Store, StoreError};
use crate::events;
use crate::flow::{Retry, Sink, SinkError};
use crate::message::Message;

/// How often a send waiting for room looks again, besides being woken by a removal.
const ROOM_CHECK: Duration = Duration::from_secs(1);

pub struct BufferSink {
    route: Arc<str>,
    store: Arc<Store>,
    /// Whether the full buffer was reported (and not yet its room).
    full: AtomicBool,
}

impl BufferSink {
    pub fn new(route: Arc<str>, store: Arc<Store>) -> Self {
        BufferSink {
            route,
            store,
            full: AtomicBool::new(false),
        }
    }

    /// Waits until the buffer has room for `bytes`, and takes it.
    async fn room(&self, bytes: u64) {
        loop {
            let freed = self.store.room.notified();
            if self.store.reserve(bytes) {
                if self.full.swap(false, Ordering::Relaxed) {
                    events::BufferRoom { route: &self.route }.emit();
                }
                return;
            }
            if !self.full.swap(true, Ordering::Relaxed) {
                events::BufferFull {
                    route: &self.route,
                    max_size: self.store.max_size(),
                }
                .emit();
            }
            let _ = tokio::time::timeout(ROOM_CHECK, freed).await;
        }
    }
}

#[async_trait]
impl Sink for BufferSink {
    async fn send(&self, batch: &[&Message]) -> Vec<Result<(), SinkError>> {
        let mut chunks = Chunks::default();
        for msg in batch {
            chunks.push_with(|blob| codec::encode_into(blob, msg));
        }
        let chunks = Arc::new(chunks.done());
        let bytes = chunks.iter().map(|c| c.bytes() as u64).sum();
        loop {
            self.room(bytes).await;
            let (store, chunks) = (self.store.clone(), chunks.clone());
            let written = tokio::task::spawn_blocking(move || store.append_chunks(&chunks)).await;
            self.store.release(bytes);
            let error = match written {
                Ok(Ok(())) => {
                    if self.full.swap(false, Ordering::Relaxed) {
                        events::BufferRoom { route: &self.route }.emit();
                    }
                    return batch.iter().map(|_| Ok(())).collect();
                }
                Ok(Err(e)) => e,
                Err(join) => StoreError::Io {
                    path: self.store.path().display().to_string(),
                    error: std::io::Error::other(join.to_string()),
                },
            };
            let disk_full = error.is_disk_full();
            if !disk_full || !self.full.swap(true, Ordering::Relaxed) {
                events::BufferWriteFailed {
                    route: &self.route,
                    disk_full,
                    error: &error.to_string(),
                }
                .emit();
            }
            // A full disk is waited out like a full buffer; another failure is the pipeline's
            // to retry.
            if !disk_full {
                let failure = SinkError::new("buffer_io", Retry::Retriable, error);
                return batch.iter().map(|_| Err(failure.clone())).collect();
            }
        }
    }
}
