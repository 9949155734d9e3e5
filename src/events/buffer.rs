//! A route's disk buffer: opened, full and with room again, a write that failed, a value found
//! damaged, and its level (bytes, messages, the age of the oldest).

use metrics::{counter, gauge, Gauge};
use tracing::{error, info, warn};

/// The buffer was opened, holding what an earlier run left.
pub struct BufferOpened<'a> {
    pub route: &'a str,
    pub path: &'a std::path::Path,
    pub messages: u64,
    pub bytes: u64,
}

impl BufferOpened<'_> {
    pub fn emit(&self) {
        let route = self.route.to_owned();
        for name in [
            "mqbridge_buffer_write_errors_total",
            "mqbridge_buffer_damaged_total",
            "mqbridge_buffer_written_total",
        ] {
            counter!(name, "route" => route.clone()).increment(0);
        }
        gauge!("mqbridge_buffer_full", "route" => route).set(0.0);
        info!(
            route = self.route,
            path = %self.path.display(),
            messages = self.messages,
            bytes = self.bytes,
            "disk buffer opened"
        );
    }
}

/// The buffer holds `max_size`: the route stops reading until its sink takes some.
pub struct BufferFull<'a> {
    pub route: &'a str,
    pub max_size: u64,
}

impl BufferFull<'_> {
    pub fn emit(&self) {
        gauge!("mqbridge_buffer_full", "route" => self.route.to_owned()).set(1.0);
        error!(
            route = self.route,
            max_size = self.max_size,
            "the disk buffer is full; the route stops reading until its sink takes some (nothing is dropped)"
        );
    }
}

/// The full buffer has room again.
pub struct BufferRoom<'a> {
    pub route: &'a str,
}

impl BufferRoom<'_> {
    pub fn emit(&self) {
        gauge!("mqbridge_buffer_full", "route" => self.route.to_owned()).set(0.0);
        info!(
            route = self.route,
            "the disk buffer has room again; the route reads"
        );
    }
}

/// Writing to the buffer failed (the disk is full, or refuses): the messages stay
/// unacknowledged at their source and the write is tried again.
pub struct BufferWriteFailed<'a> {
    pub route: &'a str,
    pub disk_full: bool,
    pub error: &'a str,
}

impl BufferWriteFailed<'_> {
    pub fn emit(&self) {
        let kind = if self.disk_full { "disk_full" } else { "io" };
        if self.disk_full {
            gauge!("mqbridge_buffer_full", "route" => self.route.to_owned()).set(1.0);
        }
        counter!("mqbridge_buffer_write_errors_total", "route" => self.route.to_owned(), "error" => kind)
            .increment(1);
        let what = match self.disk_full {
            true => "the disk buffer's disk is full; the route stops reading until there is room (nothing is dropped)",
            false => "writing the disk buffer failed; the route stops reading and tries again (nothing is dropped)",
        };
        error!(route = self.route, error = self.error, "{what}");
    }
}

/// A stored value did not read back (a torn or corrupted write): set aside, not delivered.
pub struct BufferDamaged<'a> {
    pub route: &'a str,
    pub seq: u64,
    pub error: &'a str,
}

impl BufferDamaged<'_> {
    pub fn emit(&self) {
        counter!("mqbridge_buffer_damaged_total", "route" => self.route.to_owned()).increment(1);
        error!(
            route = self.route,
            seq = self.seq,
            error = self.error,
            "a message in the disk buffer cannot be read back; it is set aside in the file's \
             `damaged` table and the messages after it are delivered"
        );
    }
}

/// Reading the buffer failed; it is tried again.
pub struct BufferReadFailed<'a> {
    pub route: &'a str,
    pub error: &'a str,
}

impl BufferReadFailed<'_> {
    pub fn emit(&self) {
        warn!(
            route = self.route,
            error = self.error,
            "reading the disk buffer failed; trying again"
        );
    }
}

/// Removing what was delivered from the buffer failed; it is tried again (until then the
/// messages take room, and come again after a restart).
pub struct BufferRemoveFailed<'a> {
    pub route: &'a str,
    pub error: &'a str,
}

impl BufferRemoveFailed<'_> {
    pub fn emit(&self) {
        warn!(
            route = self.route,
            error = self.error,
            "removing delivered messages from the disk buffer failed; trying again"
        );
    }
}

/// The buffer's level gauges.
pub struct BufferLevel {
    bytes: Gauge,
    messages: Gauge,
    oldest: Gauge,
}

impl BufferLevel {
    pub fn new(route: &str) -> Self {
        let route = route.to_owned();
        BufferLevel {
            bytes: gauge!("mqbridge_buffer_bytes", "route" => route.clone()),
            messages: gauge!("mqbridge_buffer_messages", "route" => route.clone()),
            oldest: gauge!("mqbridge_buffer_oldest_age_seconds", "route" => route),
        }
    }

    /// What the buffer holds, and how old its oldest message is (0 when empty).
    pub fn show(&self, bytes: u64, messages: u64, oldest_age_ms: u64) {
        self.bytes.set(bytes as f64);
        self.messages.set(messages as f64);
        self.oldest.set(oldest_age_ms as f64 / 1000.0);
    }
}
