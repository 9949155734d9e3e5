//! Appends JSON lines. A batch is serialized first and written with one `write_all`, then
//! flushed (and fsynced when configured) before the batch counts as delivered. A write that
//! fails part-way (a full disk) is cut back to the last whole batch, so the retry cannot leave
//! a broken line behind.

use std::path::Path;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use crate::message::Message;
use crate::record::Record;

#[derive(Debug, thiserror::Error)]
pub enum FileSinkError {
    #[error("writing the file sink failed: {0}")]
    Io(Arc<std::io::Error>),
}

impl FileSinkError {
    /// A full disk or a revoked permission can be fixed while the bridge waits.
    pub fn is_retriable(&self) -> bool {
        true
    }
}

enum Output {
    Stdout(tokio::io::Stdout),
    /// The file and its length after the last whole batch.
    File(tokio::fs::File, u64),
}

pub struct FileWriter {
    out: Mutex<Output>,
    fsync: bool,
}

impl FileWriter {
    pub async fn open(path: &Path, fsync: bool) -> std::io::Result<Self> {
        let out = if path.as_os_str() == "-" {
            Output::Stdout(tokio::io::stdout())
        } else {
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .await?;
            let len = file.metadata().await?.len();
            Output::File(file, len)
        };
        Ok(FileWriter {
            out: Mutex::new(out),
            fsync,
        })
    }

    pub async fn write_batch(&self, batch: &[&Message]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(batch.iter().map(|m| m.size() + 256).sum());
        for msg in batch {
            Record::new(msg).write_line(&mut buf);
        }
        self.write_raw(&buf).await
    }

    /// Writes already-formatted lines (used by the dead-letter file).
    pub async fn write_raw(&self, buf: &[u8]) -> std::io::Result<()> {
        let mut out = self.out.lock().await;
        match &mut *out {
            Output::Stdout(s) => {
                s.write_all(buf).await?;
                s.flush().await
            }
            Output::File(f, len) => match append(f, buf, self.fsync).await {
                Ok(()) => {
                    *len += buf.len() as u64;
                    Ok(())
                }
                Err(e) => {
                    let _ = f.set_len(*len).await;
                    Err(e)
                }
            },
        }
    }
}

async fn append(f: &mut tokio::fs::File, buf: &[u8], fsync: bool) -> std::io::Result<()> {
    f.write_all(buf).await?;
    f.flush().await?;
    if fsync {
        f.sync_data().await?;
    }
    Ok(())
}
