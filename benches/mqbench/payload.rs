//! The benchmark's message: its sequence number and the publisher's send time travel in the
//! payload as ASCII (`{seq:010} {send_ns:019} xxx…`), so every sink (a raw Kafka value, a JSON
//! line of the file sink) carries them unchanged and every message can be counted and timed.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The smallest payload that holds the header.
pub const MIN_SIZE: usize = 31;

/// Nanoseconds since the Unix epoch. Every process of a run is on one machine, so the
/// publisher's clock and the sink's are the same clock.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

pub fn encode(seq: u64, send_ns: u64, size: usize) -> Vec<u8> {
    let mut p = format!("{seq:010} {send_ns:019} ").into_bytes();
    p.resize(size.max(MIN_SIZE), b'x');
    p
}

/// `(seq, send_ns)`, or `None` for a payload the publisher did not write.
pub fn decode(p: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(p.get(..MIN_SIZE - 1)?).ok()?;
    let (seq, send) = text.split_once(' ')?;
    Some((seq.parse().ok()?, send.parse().ok()?))
}

/// What a sender sends: `count` messages of `size` bytes, at `rate` a second.
#[derive(clap::Args, Debug, Clone)]
pub struct Stream {
    #[arg(long)]
    pub count: u64,
    #[arg(long)]
    pub size: usize,
    /// Messages per second; 0 sends as fast as they are taken.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
}

impl Stream {
    /// Waits until message `seq` is due (counting from `start`), then returns its payload,
    /// stamped with the time it leaves.
    pub async fn next(&self, start: Instant, seq: u64) -> Vec<u8> {
        if self.rate > 0.0 {
            let due = start + Duration::from_secs_f64(seq as f64 / self.rate);
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        encode(seq, now_ns(), self.size)
    }
}
