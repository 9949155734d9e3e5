//! A route's disk buffer. A route with `buffer = { type = "disk" }` runs in two parts on the
//! one engine: its source, rules and dead letters feed the buffer as their sink (`sink.rs`:
//! acknowledged at the source once fsynced), and the buffer feeds the route's sink as its
//! source (`source.rs`: removed once delivered or dead-lettered). Order, retries and dead
//! letters on the way out are the pipeline's, as for any route.
//!
//! Storage is redb (`store.rs`): an embedded, pure-Rust B-tree with fsynced, checksummed
//! commits and crash recovery, one file per route under `data_dir/buffers/`. It was chosen over
//! SQLite (a C library to build, and SQL for a queue) and over a log format of our own (which
//! would need its own segments, recovery and compaction): a route's buffer is a queue keyed by
//! sequence number, which a B-tree serves directly, with a fixed page cache so that memory does
//! not grow with what is buffered. The values' layout (`codec.rs`) is the bridge's own.

mod batch;
mod codec;
mod config;
mod file;
mod sink;
mod source;
mod store;

pub use config::{BufferConfig, ByteSize, MIN_SIZE};
pub use sink::BufferSink;
pub use source::BufferSource;
pub use store::{Level, Store, StoreError};

use std::path::{Path, PathBuf};

/// The file of route `route`'s buffer under `data_dir`.
pub fn path(data_dir: &Path, route: &str) -> PathBuf {
    data_dir.join("buffers").join(format!("{route}.redb"))
}
