//! A written batch as the buffer stores it: cut into values just under a power of two of
//! pages, each holding its count and then each message's length and bytes (`codec.rs`), and
//! read back into its messages, a torn value becoming one damaged message.

use super::codec::{self, Damage};
use crate::message::Message;

/// A message read back: its number, the batch it was written in (the number of the batch's
/// first message) and that batch's length, its size, and the message or why it cannot be read
/// (with its bytes, to set aside).
pub struct Stored {
    pub seq: u64,
    pub batch: u64,
    pub batch_len: usize,
    pub size: usize,
    pub message: Result<Message, (Damage, Vec<u8>)>,
}

/// The most bytes of one stored value. redb gives a large value a power-of-two run of pages,
/// so a written batch is cut into values just under 256 KiB (a batch of 500 messages of 16 KiB
/// in one value took a 16 MiB run for 8 MiB: the file was 2.5 times what it held).
pub(super) const CHUNK_BYTES: usize = 256 * 1024 - 512;

/// Messages stored as one value: how many, and the value (its count, then each message's
/// length and bytes).
pub struct Chunk {
    pub(super) count: usize,
    pub(super) blob: Vec<u8>,
}

/// Chunks being filled, a message at a time, each message written once, in place.
#[derive(Default)]
pub struct Chunks {
    done: Vec<Chunk>,
    open: Option<Chunk>,
}

impl Chunks {
    /// Adds the message `write` appends to the buffer it is given.
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let chunk = self.open.get_or_insert_with(|| Chunk {
            count: 0,
            blob: 0u32.to_le_bytes().to_vec(),
        });
        let at = chunk.blob.len();
        chunk.blob.extend_from_slice(&0u32.to_le_bytes());
        write(&mut chunk.blob);
        let len = (chunk.blob.len() - at - 4) as u32;
        chunk.blob[at..at + 4].copy_from_slice(&len.to_le_bytes());
        if chunk.blob.len() > CHUNK_BYTES && chunk.count > 0 {
            // Too large with it: it starts the next chunk.
            let moved = chunk.blob.split_off(at);
            self.close();
            let mut blob = 1u32.to_le_bytes().to_vec();
            blob.extend_from_slice(&moved);
            self.open = Some(Chunk { count: 1, blob });
        } else {
            chunk.count += 1;
        }
        if self
            .open
            .as_ref()
            .is_some_and(|c| c.blob.len() >= CHUNK_BYTES)
        {
            self.close();
        }
    }

    fn close(&mut self) {
        if let Some(mut chunk) = self.open.take() {
            chunk.blob[..4].copy_from_slice(&(chunk.count as u32).to_le_bytes());
            self.done.push(chunk);
        }
    }

    /// The chunks, in order.
    pub fn done(mut self) -> Vec<Chunk> {
        self.close();
        self.done
    }
}

impl Chunk {
    /// Its bytes, as the buffer's size counts them.
    pub fn bytes(&self) -> usize {
        self.blob.len()
    }
}

#[cfg(test)]
pub(super) fn batch_blob(values: &[Vec<u8>]) -> Vec<u8> {
    let mut chunks = Chunks::default();
    for value in values {
        chunks.push_with(|blob| blob.extend_from_slice(value));
    }
    let mut done = chunks.done();
    assert_eq!(done.len(), 1, "one chunk");
    done.remove(0).blob
}

/// The number of messages a batch says it holds.
pub(super) fn blob_count(blob: &[u8]) -> usize {
    blob.get(..4).map_or(0, |b| {
        u32::from_le_bytes(b.try_into().expect("four bytes")) as usize
    })
}

/// The messages of the batch numbered `batch`. A length that runs past the batch's end (a
/// torn write) makes the rest of it one damaged message.
pub(super) fn unbatch(batch: u64, blob: &[u8]) -> Vec<Stored> {
    let count = blob_count(blob);
    if count == 0 {
        // Not even its count reads: the whole value is one damaged message, set aside, so
        // that the value is removed like any other.
        let damage = Damage::Layout("a batch without messages");
        return vec![Stored {
            seq: batch,
            batch,
            batch_len: 1,
            size: blob.len(),
            message: Err((damage, blob.to_vec())),
        }];
    }
    let mut out = Vec::with_capacity(count.min(blob.len() / 8));
    let mut at = 4.min(blob.len());
    for index in 0..count {
        let seq = batch + index as u64;
        let len = blob
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("four bytes")) as usize);
        let value = len.and_then(|len| blob.get(at + 4..at + 4 + len));
        let Some(value) = value else {
            let rest = blob[at..].to_vec();
            let damage = Damage::Layout("a batch whose lengths run past its end");
            out.push(Stored {
                seq,
                batch,
                batch_len: index + 1,
                size: rest.len(),
                message: Err((damage, rest)),
            });
            // The batch ends here: what follows cannot be told apart.
            out.iter_mut().for_each(|s| s.batch_len = index + 1);
            return out;
        };
        at += 4 + value.len();
        out.push(Stored {
            seq,
            batch,
            batch_len: count,
            size: value.len(),
            message: codec::decode(value, &crate::connectors::system)
                .map_err(|d| (d, value.to_vec())),
        });
    }
    out
}
