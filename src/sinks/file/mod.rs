//! The `file` sink: JSON lines (see `record.rs`) appended to a file or written to stdout.

mod writer;

pub use writer::{FileSinkError, FileWriter};
