//! A route's disk buffer file: batches of messages in a redb table, each under the number of
//! its first message (messages are numbered in the order written), with the totals (bytes,
//! messages, next number) kept in the same transactions, so that they never disagree with what
//! is stored. Every call blocks: the buffer's sink and source run them with
//! `spawn_blocking`. An append commits with redb's default durability (written and fsynced
//! before it returns); a removal is fsynced by the next write a second or more after the last
//! sync, or by the reader's `sync` when it idles or stops (losing one only brings a
//! duplicate).
//!
//! A message that does not read back (its checksum, see `codec.rs`; or a batch whose lengths
//! run past its end) is copied to a `damaged` table: counted, reported and kept for
//! inspection, never delivered and never in the way of the messages after it. After an I/O
//! error redb refuses further writes until the file is opened again; the store does that on
//! the next write.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock, Weak};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::Notify;

use super::batch::{blob_count, unbatch, Chunk, Chunks, Stored};
use super::codec;
use super::file::Allocated;

const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
const DAMAGED: TableDefinition<u64, &[u8]> = TableDefinition::new("damaged");
const TOTALS: TableDefinition<&str, u64> = TableDefinition::new("totals");

/// The longest a removal stays unsynced (a crash then delivers again what it removed).
const SYNC_REMOVALS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// How long writes wait after finding the disk full before they try again, unless a removal
/// frees room first.
const DISK_FULL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// redb's page cache: what it keeps of the file in memory, whatever the file holds.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// Why the buffer file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {error}")]
    Db { path: String, error: redb::Error },
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
}

impl StoreError {
    /// The operating system's error, when the disk is full or refuses the write.
    pub fn is_disk_full(&self) -> bool {
        let io = match self {
            StoreError::Io { error, .. } => Some(error),
            StoreError::Db {
                error: redb::Error::Io(error),
                ..
            } => Some(error),
            _ => None,
        };
        io.is_some_and(|e| e.raw_os_error() == Some(libc::ENOSPC))
    }
}

/// What the buffer holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Level {
    pub bytes: u64,
    pub messages: u64,
    /// Values found damaged and set aside, since the file was made.
    pub damaged: u64,
}

pub struct Store {
    path: PathBuf,
    /// `None` after an I/O error, until the next write opens the file again.
    db: RwLock<Option<Database>>,
    totals: Mutex<Totals>,
    /// Held through each write transaction.
    writing: Mutex<()>,
    /// When a write was last fsynced.
    last_sync: Mutex<std::time::Instant>,
    /// A removal committed since, not yet fsynced.
    unsynced: std::sync::atomic::AtomicBool,
    /// How many times the file was opened: after an I/O error, redb goes back to the last
    /// fsynced commit, so removals made since may come back, and the reader reads again.
    opens: AtomicU64,
    /// Bytes being written by sends that found room, not yet in `totals`.
    reserved: AtomicU64,
    max_size: AtomicU64,
    /// When a write last found the disk full, until a removal frees room: writes wait, so
    /// that the removals (which need a few free pages too) get what the disk has.
    disk_full: Mutex<Option<std::time::Instant>>,
    /// Woken when something was removed (room) and when something was appended (data).
    pub room: Notify,
    pub data: Notify,
}

#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    level: Level,
    next: u64,
}

/// The stores open in this process by path: a route started again (a reload, a resume after
/// an error) takes the same one, since redb opens a file once.
static OPEN: LazyLock<Mutex<HashMap<PathBuf, Weak<Store>>>> = LazyLock::new(Default::default);

impl Store {
    /// The buffer at `path`, made if it does not exist, holding at most `max_size` bytes of
    /// messages.
    pub fn open(path: &Path, max_size: u64) -> Result<Arc<Store>, StoreError> {
        let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|_, store| store.strong_count() > 0);
        if let Some(store) = open.get(path).and_then(Weak::upgrade) {
            store.max_size.store(max_size, Ordering::Relaxed);
            return Ok(store);
        }
        let io = |error| StoreError::Io {
            path: path.display().to_string(),
            error,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let store = Store {
            path: path.to_owned(),
            db: RwLock::new(None),
            totals: Mutex::default(),
            writing: Mutex::new(()),
            last_sync: Mutex::new(std::time::Instant::now()),
            unsynced: std::sync::atomic::AtomicBool::new(false),
            opens: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
            max_size: AtomicU64::new(max_size),
            disk_full: Mutex::new(None),
            room: Notify::new(),
            data: Notify::new(),
        };
        store.reopen()?;
        let store = Arc::new(store);
        open.insert(path.to_owned(), Arc::downgrade(&store));
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn max_size(&self) -> u64 {
        self.max_size.load(Ordering::Relaxed)
    }

    pub fn level(&self) -> Level {
        self.totals().level
    }

    fn totals(&self) -> Totals {
        *self.totals.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn db_error(&self, error: impl Into<redb::Error>) -> StoreError {
        StoreError::Db {
            path: self.path.display().to_string(),
            error: error.into(),
        }
    }

    /// Opens the file (again), reading its totals.
    fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        *slot = None;
        let io = |error| StoreError::Io {
            path: self.path.display().to_string(),
            error,
        };
        let backend = Allocated::open(&self.path).map_err(io)?;
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(backend)
            .map_err(|e| self.db_error(e))?;
        let txn = db.begin_write().map_err(|e| self.db_error(e))?;
        let totals = {
            txn.open_table(MESSAGES).map_err(|e| self.db_error(e))?;
            txn.open_table(DAMAGED).map_err(|e| self.db_error(e))?;
            let t = txn.open_table(TOTALS).map_err(|e| self.db_error(e))?;
            let get = |name| -> Result<u64, StoreError> {
                let v = t.get(name).map_err(|e| self.db_error(e))?;
                Ok(v.map_or(0, |v| v.value()))
            };
            Totals {
                level: Level {
                    bytes: get("bytes")?,
                    messages: get("messages")?,
                    damaged: get("damaged")?,
                },
                next: get("next")?,
            }
        };
        txn.commit().map_err(|e| self.db_error(e))?;
        *self.totals.lock().unwrap_or_else(|p| p.into_inner()) = totals;
        *slot = Some(db);
        self.opens.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// The database, opened again if a write failed since.
    fn opened(&self) -> Result<std::sync::RwLockReadGuard<'_, Option<Database>>, StoreError> {
        if self.db.read().unwrap_or_else(|p| p.into_inner()).is_none() {
            let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
            if self.db.read().unwrap_or_else(|p| p.into_inner()).is_none() {
                self.reopen()?;
            }
        }
        Ok(self.db.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs `f` in a write transaction and commits it; the file is opened again first if an
    /// earlier write failed, and dropped after a failure, to be opened by the next.
    /// `durable`: fsynced before it returns (an append); else fsynced at most
    /// `SYNC_REMOVALS_EVERY` later, by this write or a later one (a removal, whose loss in a
    /// crash only brings duplicates).
    fn write<T>(
        &self,
        durable: bool,
        f: impl FnOnce(&redb::WriteTransaction, &mut Totals) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        // One write at a time, from the totals it starts from to those it leaves (redb would
        // serialize the transactions, but not the totals kept beside them).
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        self.write_locked(durable, f)
    }

    /// `write`, the writing lock held.
    fn write_locked<T>(
        &self,
        durable: bool,
        f: impl FnOnce(&redb::WriteTransaction, &mut Totals) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        if self.db.read().unwrap_or_else(|p| p.into_inner()).is_none() {
            self.reopen()?;
        }
        let slot = self.db.read().unwrap_or_else(|p| p.into_inner());
        let db = slot.as_ref().expect("opened above");
        let mut totals = self.totals();
        let mut last_sync = self.last_sync.lock().unwrap_or_else(|p| p.into_inner());
        let sync = durable || last_sync.elapsed() >= SYNC_REMOVALS_EVERY;
        let done = (|| -> Result<T, redb::Error> {
            let mut txn = db.begin_write()?;
            if !sync {
                txn.set_durability(redb::Durability::None)?;
            }
            let out = f(&txn, &mut totals)?;
            {
                let mut t = txn.open_table(TOTALS)?;
                t.insert("bytes", totals.level.bytes)?;
                t.insert("messages", totals.level.messages)?;
                t.insert("damaged", totals.level.damaged)?;
                t.insert("next", totals.next)?;
            }
            txn.commit()?;
            Ok(out)
        })();
        match done {
            Ok(out) => {
                *self.totals.lock().unwrap_or_else(|p| p.into_inner()) = totals;
                if sync {
                    *last_sync = std::time::Instant::now();
                }
                self.unsynced.store(!sync, Ordering::Release);
                Ok(out)
            }
            Err(error) => {
                drop(slot);
                *self.db.write().unwrap_or_else(|p| p.into_inner()) = None;
                Err(self.db_error(error))
            }
        }
    }

    /// Takes room for `bytes` more when the buffer has it (or is empty: a batch larger than
    /// the whole buffer still goes through, alone); `release` gives it back.
    pub fn reserve(&self, bytes: u64) -> bool {
        let disk_full = *self.disk_full.lock().unwrap_or_else(|p| p.into_inner());
        if disk_full.is_some_and(|at| at.elapsed() < DISK_FULL_WAIT) {
            return false;
        }
        let held = self.level().bytes;
        let mut reserved = self.reserved.load(Ordering::Relaxed);
        loop {
            let empty = held == 0 && reserved == 0;
            if !empty && held + reserved + bytes > self.max_size() {
                return false;
            }
            match self.reserved.compare_exchange(
                reserved,
                reserved + bytes,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => reserved = now,
            }
        }
    }

    pub fn release(&self, bytes: u64) {
        self.reserved.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Appends `values` (encoded messages) in their order, durably, as one batch: one value
    /// under the number of its first message (a B-tree entry per message cost twice the CPU
    /// of the whole route at 1 KiB payloads).
    pub fn append(&self, values: &[Vec<u8>]) -> Result<(), StoreError> {
        let mut chunks = Chunks::default();
        for value in values {
            chunks.push_with(|blob| blob.extend_from_slice(value));
        }
        self.append_chunks(&chunks.done())
    }

    /// Appends the messages of `chunks`, in their order, durably, in one transaction.
    pub fn append_chunks(&self, chunks: &[Chunk]) -> Result<(), StoreError> {
        self.append_once(chunks, true)
    }

    /// `append_chunks`; `reset`: an empty file the disk cannot grow may start anew, once.
    fn append_once(&self, chunks: &[Chunk], reset: bool) -> Result<(), StoreError> {
        if chunks.is_empty() {
            return Ok(());
        }
        let written = self.write(true, |txn, totals| {
            let mut table = txn.open_table(MESSAGES)?;
            for chunk in chunks {
                table.insert(totals.next, chunk.blob.as_slice())?;
                totals.next += chunk.count as u64;
                totals.level.bytes += chunk.blob.len() as u64;
                totals.level.messages += chunk.count as u64;
            }
            Ok(())
        });
        if let Err(e) = &written {
            if e.is_disk_full() {
                *self.disk_full.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(std::time::Instant::now());
                // An empty file that the disk cannot grow starts anew, giving back what it took.
                if reset && self.reset_if_delivered(&[]).unwrap_or(false) {
                    return self.append_once(chunks, false);
                }
            }
        }
        written?;
        self.data.notify_waiters();
        Ok(())
    }

    /// The messages of the batches from the one numbered `from` on: whole batches, up to `max`
    /// messages and past the first batch at most `max_bytes`.
    pub fn read(&self, from: u64, max: usize, max_bytes: usize) -> Result<Vec<Stored>, StoreError> {
        let slot = self.opened()?;
        let db = slot.as_ref().expect("opened");
        let mut out = Vec::new();
        let mut bytes = 0;
        let read = (|| -> Result<(), redb::Error> {
            let txn = db.begin_read()?;
            let table = txn.open_table(MESSAGES)?;
            for entry in table.range(from..)? {
                let (batch, blob) = entry?;
                let blob = blob.value();
                let full = out.len() >= max || bytes + blob.len() > max_bytes;
                if !out.is_empty() && full {
                    break;
                }
                bytes += blob.len();
                out.extend(unbatch(batch.value(), blob));
            }
            Ok(())
        })();
        read.map_err(|e| self.db_error(e))?;
        Ok(out)
    }

    /// Removes the batches (by their numbers) whose every message was delivered or
    /// dead-lettered.
    pub fn remove(&self, batches: &[u64]) -> Result<(), StoreError> {
        // On a full disk, synced at once: redb reuses a removal's pages only once it is.
        let disk_full = self
            .disk_full
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        self.write(disk_full, |txn, totals| {
            let mut table = txn.open_table(MESSAGES)?;
            for batch in batches {
                if let Some(blob) = table.remove(batch)? {
                    let blob = blob.value();
                    totals.level.bytes -= (blob.len() as u64).min(totals.level.bytes);
                    let count = blob_count(blob) as u64;
                    totals.level.messages = totals.level.messages.saturating_sub(count);
                }
            }
            Ok(())
        })?;
        *self.disk_full.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.room.notify_waiters();
        Ok(())
    }

    /// Starts the file anew, keeping the numbering and what was set aside: for a full disk on
    /// which not even a removal can be written, once everything the file holds was delivered
    /// (`delivered`: the batches done and not yet removed; the file's batches must be exactly
    /// those). Returns whether it did.
    pub fn reset_if_delivered(&self, delivered: &[u64]) -> Result<bool, StoreError> {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let totals = self.totals();
        let (held, damaged) = {
            let slot = self.db.read().unwrap_or_else(|p| p.into_inner());
            let Some(db) = slot.as_ref() else {
                return Ok(false);
            };
            let read = (|| -> Result<(Vec<u64>, SetAside), redb::Error> {
                let txn = db.begin_read()?;
                let messages = txn.open_table(MESSAGES)?;
                let held = messages
                    .iter()?
                    .map(|e| e.map(|(k, _)| k.value()))
                    .collect::<Result<_, _>>()?;
                let aside = txn.open_table(DAMAGED)?;
                let damaged = aside
                    .iter()?
                    .map(|e| e.map(|(k, v)| (k.value(), v.value().to_vec())))
                    .collect::<Result<_, _>>()?;
                Ok((held, damaged))
            })();
            read.map_err(|e| self.db_error(e))?
        };
        let done: std::collections::HashSet<u64> = delivered.iter().copied().collect();
        if !held.iter().all(|k| done.contains(k)) {
            return Ok(false);
        }
        *self.db.write().unwrap_or_else(|p| p.into_inner()) = None;
        std::fs::remove_file(&self.path).map_err(|error| StoreError::Io {
            path: self.path.display().to_string(),
            error,
        })?;
        self.reopen()?;
        self.write_locked(true, |txn, t| {
            t.next = totals.next;
            let mut table = txn.open_table(DAMAGED)?;
            for (seq, bytes) in &damaged {
                table.insert(seq, bytes.as_slice())?;
            }
            t.level.damaged = damaged.len() as u64;
            Ok(())
        })?;
        *self.disk_full.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.room.notify_waiters();
        Ok(true)
    }

    /// Keeps a message that does not read back (its number and bytes) in the `damaged` table,
    /// for inspection; its batch goes when the rest of it is delivered.
    pub fn set_aside(&self, seq: u64, bytes: &[u8]) -> Result<(), StoreError> {
        self.write(true, |txn, totals| {
            // Read again after a restart, it is kept once.
            if txn.open_table(DAMAGED)?.insert(seq, bytes)?.is_none() {
                totals.level.damaged += 1;
            }
            Ok(())
        })
    }

    /// How many times the file was opened (see `opens`).
    pub fn opens(&self) -> u64 {
        self.opens.load(Ordering::Acquire)
    }

    /// Fsyncs the removals committed since the last sync, if there are any.
    pub fn sync(&self) -> Result<(), StoreError> {
        if !self.unsynced.load(Ordering::Acquire) {
            return Ok(());
        }
        self.write(true, |_, _| Ok(()))
    }

    /// When the oldest message held was received (ms since the epoch).
    pub fn oldest(&self) -> Option<u64> {
        let slot = self.opened().ok()?;
        let txn = slot.as_ref()?.begin_read().ok()?;
        let table = txn.open_table(MESSAGES).ok()?;
        let (_, blob) = table.first().ok()??;
        codec::timestamp(blob.value().get(8..)?)
    }
}

/// What a file set aside: each damaged message's number and bytes.
type SetAside = Vec<(u64, Vec<u8>)>;

#[cfg(test)]
mod tests {
    use super::super::batch::{batch_blob, CHUNK_BYTES};
    use super::super::codec::Damage;
    use super::*;
    use crate::message::tests::sample;
    use std::collections::HashSet;

    fn seqs(read: &[Stored]) -> Vec<u64> {
        read.iter().map(|s| s.seq).collect()
    }

    #[test]
    fn what_is_appended_reads_back_in_order_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.redb");
        let msgs: Vec<_> = (0..10).map(|i| sample(&format!("t/{i}"))).collect();
        let values: Vec<_> = msgs.iter().map(codec::encode).collect();
        {
            let store = Store::open(&path, 1 << 20).unwrap();
            store.append(&values[..2]).unwrap();
            store.append(&values[2..6]).unwrap();
            store.append(&values[6..]).unwrap();
            store.remove(&[0]).unwrap();
            assert_eq!(store.level().messages, 8);
        }
        let store = Store::open(&path, 1 << 20).unwrap();
        let level = store.level();
        assert_eq!(level.messages, 8);
        assert_eq!(
            level.bytes as usize,
            batch_blob(&values[2..6]).len() + batch_blob(&values[6..]).len()
        );
        let read = store.read(0, 100, usize::MAX).unwrap();
        assert_eq!(seqs(&read), [2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(read[0].message.as_ref().unwrap(), &msgs[2]);
        assert_eq!((read[0].batch, read[0].batch_len), (2, 4));
        assert_eq!((read[7].batch, read[7].batch_len), (6, 4));
        // Whole batches: the first one even past the limits, then none past them.
        assert_eq!(seqs(&store.read(6, 1, 1).unwrap()), [6, 7, 8, 9]);
        assert_eq!(store.read(2, 2, usize::MAX).unwrap().len(), 4);
        assert_eq!(store.oldest(), Some(msgs[2].timestamp_ms));
    }

    #[test]
    fn concurrent_appends_and_removals_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("r.redb"), 1 << 30).unwrap();
        let value = codec::encode(&sample("a"));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..25 {
                        store.append(&vec![value.clone(); 10]).unwrap();
                    }
                });
            }
            s.spawn(|| {
                for batch in (0..50).map(|b| b * 10) {
                    store.remove(&[batch]).unwrap();
                }
            });
        });
        let held = store.read(0, usize::MAX, usize::MAX).unwrap();
        let level = store.level();
        assert_eq!(level.messages as usize, held.len());
        assert_eq!(
            level.bytes as usize,
            held.len() / 10 * batch_blob(&vec![value.clone(); 10]).len()
        );
        assert!(held.len() >= 1_000 - 500, "{} held", held.len());
        let unique: HashSet<u64> = held.iter().map(|s| s.seq).collect();
        assert_eq!(unique.len(), held.len());
        assert_eq!(
            held.last().unwrap().seq,
            999,
            "every append took numbers of its own"
        );
    }

    #[test]
    fn a_file_holding_only_what_was_delivered_starts_anew_keeping_the_numbering() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("r.redb"), 1 << 20).unwrap();
        let value = codec::encode(&sample("a"));
        store.append(&vec![value.clone(); 3]).unwrap();
        store.append(std::slice::from_ref(&value)).unwrap();
        store.set_aside(9, b"kept").unwrap();
        assert!(
            !store.reset_if_delivered(&[0]).unwrap(),
            "the batch at 3 is not delivered"
        );
        assert!(store.reset_if_delivered(&[0, 3]).unwrap());
        let kept = Level {
            damaged: 1,
            ..Level::default()
        };
        assert_eq!(store.level(), kept, "what was set aside stays");
        store.set_aside(9, b"kept").unwrap();
        assert_eq!(store.level().damaged, 1, "set aside once");
        store.append(&[value]).unwrap();
        assert_eq!(seqs(&store.read(0, 10, usize::MAX).unwrap()), [4]);
    }

    #[test]
    fn a_large_batch_is_stored_in_chunks_under_a_power_of_two_and_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("r.redb"), 1 << 30).unwrap();
        let mut msgs = Vec::new();
        for i in 0..40 {
            let mut m = sample(&format!("t/{i}"));
            m.payload = vec![i as u8; 16 * 1024].into();
            msgs.push(m);
        }
        let mut chunks = Chunks::default();
        for m in &msgs {
            chunks.push_with(|blob| codec::encode_into(blob, m));
        }
        let chunks = chunks.done();
        assert!(chunks.len() > 1);
        assert!(
            chunks.iter().all(|c| c.bytes() <= CHUNK_BYTES),
            "every chunk under its bound"
        );
        assert_eq!(chunks.iter().map(|c| c.count).sum::<usize>(), 40);
        store.append_chunks(&chunks).unwrap();
        let read = store.read(0, 1000, usize::MAX).unwrap();
        let back: Vec<_> = read.into_iter().map(|s| s.message.unwrap()).collect();
        assert_eq!(back, msgs);
        assert_eq!(store.level().messages, 40);
    }

    #[test]
    fn room_is_taken_up_to_the_size_and_a_lone_batch_always_fits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("r.redb"), 100).unwrap();
        assert!(
            store.reserve(500),
            "an empty buffer takes one batch of any size"
        );
        assert!(!store.reserve(1));
        store.release(500);
        assert!(store.reserve(60));
        assert!(!store.reserve(60));
        assert!(store.reserve(40));
    }

    #[test]
    fn a_damaged_message_is_set_aside_and_the_rest_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("r.redb"), 1 << 20).unwrap();
        let mut bad = codec::encode(&sample("a"));
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let values = [
            codec::encode(&sample("a")),
            bad.clone(),
            codec::encode(&sample("c")),
        ];
        store.append(&values).unwrap();
        let read = store.read(0, 10, usize::MAX).unwrap();
        assert!(matches!(&read[1].message, Err((Damage::Checksum, b)) if *b == bad));
        assert!(read[0].message.is_ok() && read[2].message.is_ok());
        store.set_aside(1, &bad).unwrap();
        assert_eq!(store.level().damaged, 1);
    }

    #[test]
    fn a_torn_batch_reads_as_its_whole_messages_and_one_damaged_rest() {
        let values = [codec::encode(&sample("a")), codec::encode(&sample("b"))];
        let blob = batch_blob(&values);
        let torn = &blob[..blob.len() - 10];
        let read = unbatch(7, torn);
        assert_eq!(seqs(&read), [7, 8]);
        assert!(read[0].message.is_ok());
        assert!(matches!(read[1].message, Err((Damage::Layout(_), _))));
        assert!(read.iter().all(|s| s.batch == 7 && s.batch_len == 2));
    }
}
