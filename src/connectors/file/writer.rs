//! Appends JSON lines. Writes are group-committed: callers queue their buffers, and the file's
//! own writer thread writes everything queued at once (one `writev`, one fsync when
//! configured), then tells each caller; what arrives meanwhile is the next group. The caller
//! that finds the thread asleep wakes it only after the other tasks ready on its runtime thread
//! ran (a yield), so that the batches of many routes, each handed a message by one read of a
//! shared connection, go into one group. Many routes
//! writing to one file thus cost one wake-up per group, not per batch, the runtime's threads
//! never block on the disk, and the order of the queue is the order in the file. A write that fails part-way (a full disk) is cut back to the
//! last whole group and fails every buffer of the group, so the retries cannot leave a broken
//! line behind; where even the cut fails, every later write tries it again first and fails
//! until it works. The job owns the queued data, so a caller that stops waiting (a hard stop)
//! does not cut its lines short. A process exit during a write can: opening the file cuts off a
//! last line of the bridge's without its newline (its messages were never acknowledged; the
//! broker redelivers them).

use std::io::{IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::oneshot;

enum Output {
    Stdout,
    File(AppendFile),
}

struct AppendFile {
    file: std::fs::File,
    /// The length after the last whole group.
    len: u64,
    /// A failed write could not be cut back: the file must be cut to `len` before the next.
    dirty: bool,
}

type Done = oneshot::Sender<std::io::Result<()>>;

#[derive(Default)]
struct Queue {
    waiting: Vec<(Vec<u8>, Done)>,
    /// The writer thread waits for work.
    asleep: bool,
    /// The writer is dropped: the thread writes what is queued and ends.
    closed: bool,
    /// Groups taken so far.
    #[cfg(test)]
    groups: usize,
}

struct Shared {
    queue: Mutex<Queue>,
    work: Condvar,
}

pub struct FileWriter {
    shared: Arc<Shared>,
    path: PathBuf,
}

impl FileWriter {
    pub async fn open(path: &Path, fsync: bool) -> std::io::Result<Self> {
        let out = if path.as_os_str() == "-" {
            Output::Stdout
        } else {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || AppendFile::open(&path).map(Output::File))
                .await
                .map_err(std::io::Error::other)??
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("mqbridge-file".into())
            .spawn(move || drain(&writer, out, fsync))?;
        Ok(FileWriter {
            shared,
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

    /// Appends already-formatted lines; returns once they are written (and fsynced when
    /// configured).
    pub async fn write(&self, buf: Vec<u8>) -> std::io::Result<()> {
        let (done, written) = oneshot::channel();
        let wake = {
            let mut queue = lock(&self.shared.queue);
            queue.waiting.push((buf, done));
            std::mem::take(&mut queue.asleep)
        };
        if wake {
            // The thread is woken once the tasks ready on this runtime thread ran: routes
            // handed a message each by one read queue theirs meanwhile, into the same group.
            // (Also when this future is dropped during the wait.)
            let _wake = Wake(&self.shared);
            tokio::task::yield_now().await;
        }
        written
            .await
            .map_err(|_| std::io::Error::other("the file writer stopped"))?
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.work.notify_one();
    }
}

/// Wakes the writer thread when dropped.
struct Wake<'a>(&'a Shared);

impl Drop for Wake<'_> {
    fn drop(&mut self) {
        self.0.work.notify_one();
    }
}

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    // Nothing holding the lock can leave the queue half-changed.
    queue.lock().unwrap_or_else(|p| p.into_inner())
}

/// The writer thread: writes group after group, sleeping while there is none, until the
/// writer is dropped and nothing is left.
fn drain(shared: &Shared, mut out: Output, fsync: bool) {
    loop {
        let group = {
            let mut q = lock(&shared.queue);
            while q.waiting.is_empty() {
                if q.closed {
                    return;
                }
                q.asleep = true;
                q = shared.work.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            #[cfg(test)]
            {
                q.groups += 1;
            }
            std::mem::take(&mut q.waiting)
        };
        let bufs: Vec<&[u8]> = group.iter().map(|g| &g.0[..]).collect();
        let result = write_group(&mut out, &bufs, fsync);
        for (_, done) in group {
            let _ = done.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            });
        }
    }
}

fn write_group(out: &mut Output, bufs: &[&[u8]], fsync: bool) -> std::io::Result<()> {
    match out {
        Output::Stdout => {
            let mut s = std::io::stdout().lock();
            write_all_vectored(&mut s, bufs)?;
            s.flush()
        }
        Output::File(f) => f.append(bufs, fsync),
    }
}

/// Writes every buffer, in order, with as few `writev` calls as the kernel allows.
fn write_all_vectored(w: &mut impl Write, bufs: &[&[u8]]) -> std::io::Result<()> {
    // The kernel takes at most IOV_MAX (1024 on Linux) buffers per call.
    for chunk in bufs.chunks(1024) {
        let mut slices: Vec<IoSlice> = chunk.iter().map(|b| IoSlice::new(b)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match w.write_vectored(rest) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

impl AppendFile {
    fn open(path: &Path) -> std::io::Result<Self> {
        let options = || {
            let mut o = std::fs::OpenOptions::new();
            o.create(true).append(true);
            o
        };
        let mut file = match options().read(true).open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                // Writable but not readable: appended to as it is, unchecked.
                let file = options().open(path)?;
                let len = file.metadata()?.len();
                return Ok(AppendFile {
                    file,
                    len,
                    dirty: false,
                });
            }
            Err(e) => return Err(e),
        };
        let size = file.metadata()?.len();
        let end = last_line_end(&mut file, size)?;
        let mut len = size;
        if end < size {
            if byte_at(&mut file, end)? == b'{' {
                // One of the bridge's lines (each is a JSON object), cut short by a crash: its
                // messages were never acknowledged, the broker redelivers them.
                file.set_len(end)?;
                len = end;
                tracing::warn!(
                    path = %path.display(),
                    bytes = size - end,
                    "cut off an unfinished last line (a write interrupted by a crash)"
                );
            } else {
                file.write_all(b"\n")?;
                len += 1;
                tracing::warn!(
                    path = %path.display(),
                    "the file ended without a newline; added one before the bridge's lines"
                );
            }
        }
        Ok(AppendFile {
            file,
            len,
            dirty: false,
        })
    }

    fn append(&mut self, bufs: &[&[u8]], fsync: bool) -> std::io::Result<()> {
        if self.dirty {
            self.file.set_len(self.len)?;
            self.dirty = false;
        }
        let written = write_all_vectored(&mut self.file, bufs).and_then(|()| match fsync {
            true => self.file.sync_data(),
            false => Ok(()),
        });
        match written {
            Ok(()) => {
                self.len += bufs.iter().map(|b| b.len() as u64).sum::<u64>();
                Ok(())
            }
            Err(e) => {
                self.dirty = self.file.set_len(self.len).is_err();
                Err(e)
            }
        }
    }
}

fn byte_at(file: &mut std::fs::File, at: u64) -> std::io::Result<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut byte = [0];
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(&mut byte)?;
    Ok(byte[0])
}

/// The length of `file` up to and including its last newline.
fn last_line_end(file: &mut std::fs::File, size: u64) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut end = size;
    let mut chunk = vec![0; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let part = &mut chunk[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(part)?;
        if let Some(i) = part.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn an_unfinished_last_line_is_cut_off_when_the_file_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{\"b\":2}\n{\"c\":").unwrap();
        let writer = FileWriter::open(&path, false).await.unwrap();
        writer.write(b"{\"d\":4}\n".to_vec()).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"b\":2}\n{\"d\":4}\n");

        std::fs::write(&path, "{\"cut\":").unwrap();
        FileWriter::open(&path, false).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");

        // Not a line of the bridge's: kept, and the bridge's lines start on a line of their own.
        std::fs::write(&path, "written by someone else").unwrap();
        let writer = FileWriter::open(&path, false).await.unwrap();
        writer.write(b"{\"e\":5}\n".to_vec()).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "written by someone else\n{\"e\":5}\n");
    }

    /// Tasks ready at once (routes handed a message each by one read) go into one group,
    /// written in the order they queued.
    #[tokio::test(flavor = "current_thread")]
    async fn writes_of_tasks_ready_together_go_in_one_group() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let writer = Arc::new(FileWriter::open(&path, false).await.unwrap());
        writer.write(b"0\n".to_vec()).await.unwrap();
        while !lock(&writer.shared.queue).asleep {
            std::thread::sleep(Duration::from_millis(1));
        }
        let tasks: Vec<_> = (1..=20)
            .map(|n| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    // Time for a thread woken at once to take a group of one.
                    std::thread::sleep(Duration::from_millis(2));
                    writer.write(format!("{n}\n").into_bytes()).await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let lines: Vec<String> = (0..=20).map(|n| format!("{n}\n")).collect();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), lines.concat());
        assert_eq!(
            lock(&writer.shared.queue).groups,
            2,
            "the first write, then the 20"
        );
    }

    /// A write dropped while it waited to wake the thread (a hard stop) still wakes it: its
    /// buffer is written, and later writes are not left waiting for a thread nobody woke.
    #[tokio::test(flavor = "current_thread")]
    async fn a_write_dropped_before_it_woke_the_thread_still_wakes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let writer = FileWriter::open(&path, false).await.unwrap();
        writer.write(b"0\n".to_vec()).await.unwrap();
        {
            let mut write = std::pin::pin!(writer.write(b"1\n".to_vec()));
            assert!(futures::poll!(write.as_mut()).is_pending());
        }
        let second = tokio::time::timeout(Duration::from_secs(10), writer.write(b"2\n".to_vec()));
        second.await.expect("the writer thread was woken").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "0\n1\n2\n");
    }

    /// Takes at most 7 bytes per call, as a kernel may.
    struct Trickle(Vec<u8>);

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = buf.len().min(7);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn vectored_writes_survive_short_writes_and_more_buffers_than_a_call_takes() {
        let lines: Vec<Vec<u8>> = (0..3000).map(|i| format!("{i}\n").into_bytes()).collect();
        let bufs: Vec<&[u8]> = lines.iter().map(|l| &l[..]).collect();
        let mut out = Trickle(Vec::new());
        write_all_vectored(&mut out, &bufs).unwrap();
        assert_eq!(out.0, lines.concat());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_land_whole_and_each_writer_keeps_its_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let writer = Arc::new(FileWriter::open(&path, false).await.unwrap());
        let tasks: Vec<_> = (0..8)
            .map(|w| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    for i in 0..200 {
                        let line = format!("{w} {i}\n");
                        writer.write(line.into_bytes()).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut next = [0; 8];
        for line in text.lines() {
            let (w, i) = line.split_once(' ').unwrap();
            let (w, i): (usize, usize) = (w.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[w], "writer {w} out of order");
            next[w] += 1;
        }
        assert_eq!(next, [200; 8]);
    }
}
