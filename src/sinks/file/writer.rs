//! Appends JSON lines. A batch is serialized first and written with one `write_all` on the
//! blocking pool (an unbuffered file: once it returns, the data is in the kernel), and fsynced
//! when configured, before the batch counts as delivered. A write that fails part-way (a full
//! disk) is cut back to the last whole batch, so the retry cannot leave a broken line behind.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::Mutex;

enum Output {
    Stdout,
    /// The file and its length after the last whole batch.
    File(std::fs::File, u64),
}

pub struct FileWriter {
    out: Arc<Mutex<Output>>,
    fsync: bool,
    path: std::path::PathBuf,
}

impl FileWriter {
    pub async fn open(path: &Path, fsync: bool) -> std::io::Result<Self> {
        let out = if path.as_os_str() == "-" {
            Output::Stdout
        } else {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                let len = file.metadata()?.len();
                Ok::<_, std::io::Error>(Output::File(file, len))
            })
            .await
            .map_err(std::io::Error::other)??
        };
        Ok(FileWriter {
            out: Arc::new(Mutex::new(out)),
            fsync,
            path: path.to_owned(),
        })
    }

    /// Where it writes, for the connection check's log line.
    pub fn describe(&self) -> String {
        match self.path.as_os_str() == "-" {
            true => "standard output".into(),
            false => format!("appending to {}", self.path.display()),
        }
    }

    /// Writes already-formatted lines. Batches queue for the
    /// file in order on an async lock; the one holding it is written on the blocking pool in
    /// one hop, and that job owns the lock and the data, so a caller that stops waiting (a hard
    /// stop) does not cut its batch short. (A process exit during the write still can.)
    pub async fn write(&self, buf: Vec<u8>) -> std::io::Result<()> {
        let fsync = self.fsync;
        let mut out = self.out.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || match &mut *out {
            Output::Stdout => {
                let mut s = std::io::stdout().lock();
                s.write_all(&buf)?;
                s.flush()
            }
            Output::File(f, len) => match append(f, &buf, fsync) {
                Ok(()) => {
                    *len += buf.len() as u64;
                    Ok(())
                }
                Err(e) => {
                    let _ = f.set_len(*len);
                    Err(e)
                }
            },
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

fn append(f: &mut std::fs::File, buf: &[u8], fsync: bool) -> std::io::Result<()> {
    f.write_all(buf)?;
    if fsync {
        f.sync_data()?;
    }
    Ok(())
}
