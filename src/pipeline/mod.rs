//! The pipeline every route shares, whatever its source and sink: batching by key with
//! per-key order (`batcher`), delivery with retries and dead letters (`deliver`, with what
//! each send came to in `round`), acks in receive order per lane (`sequencer`), and the task
//! that drives them (`driver`); what a source is to it (`source`).

mod batcher;
mod deliver;
mod driver;
mod round;
mod sequencer;
mod source;

pub use batcher::Settings;
pub use deliver::Context;
pub use driver::Pipeline;
pub use source::{Engine, Source, SourceContext};

#[cfg(test)]
mod tests;
