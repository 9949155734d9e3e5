//! The file under a buffer's redb database.

use std::ops::Bound;
use std::path::Path;

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// redb's file, whose growth takes the disk space at once (`posix_fallocate`) instead of
/// leaving a sparse file: a full disk then fails the write that grows the file, and every page
/// redb holds is one it can write. Over a sparse file, redb would take unbacked pages for free
/// ones, and after the disk filled up even the removals that free room could fail.
#[derive(Debug)]
pub(super) struct Allocated {
    inner: FileBackend,
    file: std::fs::File,
}

impl Allocated {
    pub(super) fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(Allocated {
            file: file.try_clone()?,
            inner: FileBackend::new(file),
        })
    }
}

impl StorageBackend for Allocated {
    fn len(&self) -> Result<u64, BackendError> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendError> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), BackendError> {
        let now = self.inner.len()?;
        if len > now {
            use std::os::fd::AsRawFd;
            // SAFETY: the descriptor is the open file this backend owns.
            let err = unsafe {
                libc::posix_fallocate(
                    self.file.as_raw_fd(),
                    now as libc::off_t,
                    (len - now) as libc::off_t,
                )
            };
            // A file system without it (EOPNOTSUPP, EINVAL) grows the file sparse, as before.
            if err == libc::ENOSPC || err == libc::EFBIG || err == libc::EIO {
                return Err(BackendError::Io(std::io::Error::from_raw_os_error(err)));
            }
        }
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), BackendError> {
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), BackendError> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
