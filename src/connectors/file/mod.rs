//! The `file` sink: JSON lines (see `record.rs`) appended to a file or written to stdout. Its
//! settings and kind entry (`config`), and the writer (`writer`), which the dead-letter file
//! uses too.

mod config;
mod writer;

pub use config::{File, FileConnectionConfig, FileSinkConfig};
pub use writer::FileWriter;
