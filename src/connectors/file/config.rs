//! `type = "file"`: JSON lines appended to a file or written to standard output. The settings,
//! their checks and the kind's entry point (`impl Connector for File`). A file route takes no
//! keys of its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::writer::FileWriter;
use crate::connectors::{Connector, NoSource, SinkContext};
use crate::flow::{BoxError, Retry, Sink, SinkError};
use crate::message::Message;
use crate::record::Record;
use crate::settings::Check;
use crate::template::Vocabulary;

/// `[connections.NAME]` with `type = "file"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FileConnectionConfig {
    /// File to append to; "-" writes to standard output.
    pub path: PathBuf,
    /// fsync after every batch, so that an acknowledged message survives a power cut.
    /// Default false (the data is flushed to the operating system only).
    #[serde(default)]
    pub fsync: bool,
}

/// A file route's own keys: none.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct FileSinkConfig {}

/// The file connection kind.
pub struct File;

impl Connector for File {
    const NAME: &'static str = "file";
    const ORDERED_BY_DEFAULT: bool = true;
    type ConnectionConfig = FileConnectionConfig;
    type SinkConfig = FileSinkConfig;
    type SourceConfig = NoSource;
    type Connection = Arc<FileWriter>;

    fn resolve_paths(config: &mut FileConnectionConfig, base: &Path) {
        if config.path.is_relative() && config.path.as_os_str() != "-" {
            config.path = base.join(&config.path);
        }
    }

    fn files(config: &FileConnectionConfig) -> Vec<PathBuf> {
        match config.path.as_os_str() == "-" {
            true => Vec::new(),
            false => vec![config.path.clone()],
        }
    }

    fn check_connection(config: &FileConnectionConfig, check: &mut Check<'_>) {
        if config.path.as_os_str().is_empty() {
            check.field("path", "empty (use \"-\" for standard output)");
        }
    }

    fn check_sink(_: &FileSinkConfig, _: Vocabulary, _: &mut Check<'_>) {}

    async fn connect(_name: &str, c: &FileConnectionConfig) -> Result<Arc<FileWriter>, BoxError> {
        let writer = FileWriter::open(&c.path, c.fsync)
            .await
            .map_err(|e| format!("{}: {e}", c.path.display()))?;
        Ok(Arc::new(writer))
    }

    fn sink(
        writer: &Arc<FileWriter>,
        _: &SinkContext<'_>,
        _: &FileSinkConfig,
    ) -> Result<Arc<dyn Sink>, BoxError> {
        Ok(Arc::new(FileSink(writer.clone())))
    }

    async fn health_check(writer: &Arc<FileWriter>) -> Result<String, BoxError> {
        Ok(writer.describe())
    }
}

/// A route's view of a file: each message as one JSON line (`record.rs`).
struct FileSink(Arc<FileWriter>);

#[async_trait]
impl Sink for FileSink {
    async fn send(&self, batch: &[&Message]) -> Vec<Result<(), SinkError>> {
        let mut buf = Vec::with_capacity(batch.iter().map(|m| m.size() + 256).sum());
        for msg in batch {
            Record::new(msg).write_line(&mut buf);
        }
        match self.0.write(buf).await {
            Ok(()) => batch.iter().map(|_| Ok(())).collect(),
            Err(e) => {
                // A full disk or a revoked permission can be mended while the bridge waits.
                let e = SinkError::new("io", Retry::Retriable, e);
                batch.iter().map(|_| Err(e.clone())).collect()
            }
        }
    }
}
