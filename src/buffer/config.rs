//! A route's `buffer`: `{ type = "memory" }` (the default: the backlog waits in the source) or
//! `{ type = "disk", max_size = "2GiB" }`, and sizes written as `"256MiB"` or a number of bytes.

use serde::{Deserialize, Deserializer};

/// Where a route keeps what its source handed over and its sink has not yet taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum BufferConfig {
    /// In memory, within the route's window: the backlog waits in the source.
    #[default]
    Memory,
    /// In a file under `data_dir`: a message is acknowledged to its source once it is written
    /// and fsynced there, and delivered from there.
    Disk {
        /// The most message bytes the buffer holds; when full, the route stops reading until
        /// its sink takes some (nothing is dropped). Default "1GiB".
        #[serde(default = "default_max_size")]
        max_size: ByteSize,
    },
}

impl BufferConfig {
    /// The disk buffer's size, when the route has one.
    pub fn disk(&self) -> Option<u64> {
        match self {
            BufferConfig::Memory => None,
            BufferConfig::Disk { max_size } => Some(max_size.0),
        }
    }
}

/// The least `max_size`: a few batches of small messages.
pub const MIN_SIZE: u64 = 64 * 1024;

fn default_max_size() -> ByteSize {
    ByteSize(1 << 30)
}

/// A number of bytes, written as an integer or as text with a unit: `"512KiB"`, `"256MiB"`,
/// `"2GiB"` (powers of 1024; `KB`, `MB`, `GB` are powers of 1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("\"{s}\" is not a size (write \"256MiB\", \"2GiB\" or bytes)"))?;
        let scale: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            other => {
                return Err(format!(
                    "\"{other}\" is not a unit (use B, KiB, MiB, GiB or TiB)"
                ))
            }
        };
        n.checked_mul(scale)
            .map(ByteSize)
            .ok_or_else(|| format!("\"{s}\" is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Bytes(u64),
            Text(String),
        }
        match Written::deserialize(d)? {
            Written::Bytes(n) => Ok(ByteSize(n)),
            Written::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl ByteSize {
    /// The size to a tenth of its largest unit ("1.7MiB"), for people.
    pub fn approx(self) -> String {
        let n = self.0 as f64;
        for (unit, scale) in [
            ("GiB", (1u64 << 30) as f64),
            ("MiB", (1 << 20) as f64),
            ("KiB", 1024.0),
        ] {
            if n >= scale {
                return format!("{:.1}{unit}", n / scale);
            }
        }
        format!("{}B", self.0)
    }
}

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0;
        for (unit, scale) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if n >= scale && n.is_multiple_of(scale) {
                return write!(f, "{}{unit}", n / scale);
            }
        }
        write!(f, "{n}B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_and_without_units() {
        let size = |s: &str| s.parse::<ByteSize>().map(|b| b.0);
        assert_eq!(size("2GiB"), Ok(2 << 30));
        assert_eq!(size("256MiB"), Ok(256 << 20));
        assert_eq!(size("1000"), Ok(1000));
        assert_eq!(size("5 MB"), Ok(5_000_000));
        assert!(size("2 gigs").unwrap_err().contains("not a unit"));
        assert!(size("lots").unwrap_err().contains("not a size"));
        assert_eq!(ByteSize(2 << 30).to_string(), "2GiB");
        assert_eq!(ByteSize(1_817_800).approx(), "1.7MiB");
        assert_eq!(ByteSize(512).approx(), "512B");
    }

    #[test]
    fn a_buffer_table_reads_as_memory_or_disk() {
        #[derive(Deserialize)]
        struct R {
            buffer: BufferConfig,
        }
        let read = |s: &str| toml::from_str::<R>(s).map(|r| r.buffer);
        assert_eq!(
            read("buffer = { type = \"disk\", max_size = \"2GiB\" }").unwrap(),
            BufferConfig::Disk {
                max_size: ByteSize(2 << 30)
            }
        );
        assert_eq!(
            read("buffer = { type = \"disk\", max_size = 4096 }")
                .unwrap()
                .disk(),
            Some(4096)
        );
        assert_eq!(
            read("buffer = { type = \"memory\" }").unwrap(),
            BufferConfig::Memory
        );
        assert!(read("buffer = { type = \"tape\" }").is_err());
    }
}
