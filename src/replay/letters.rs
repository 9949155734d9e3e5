//! Dead letters read from a dead-letter file, and the record of those already replayed.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::message::Message;

/// A dead letter: its id (the message's id and when it failed: a message dead-lettered twice
/// is two letters), its route, why it failed, and the message.
#[derive(Debug, Clone)]
pub struct Letter {
    pub id: String,
    pub route: String,
    pub error_kind: String,
    pub message: Message,
}

pub struct Read {
    pub letters: Vec<Letter>,
    pub unreadable: u64,
}

/// Every letter of the file at `path`, in its order; a line that is not one is counted.
pub fn read(path: &Path) -> std::io::Result<Read> {
    let text = std::fs::read_to_string(path)?;
    let mut read = Read {
        letters: Vec::new(),
        unreadable: 0,
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match letter(line) {
            Ok(letter) => read.letters.push(letter),
            Err(e) => {
                read.unreadable += 1;
                tracing::warn!(error = %e, "a line of the dead-letter file is not a dead letter; skipped");
            }
        }
    }
    Ok(read)
}

fn letter(line: &str) -> Result<Letter, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let text = |name: &str| {
        v[name]
            .as_str()
            .map(str::to_owned)
            .ok_or(format!("no {name}"))
    };
    let message = crate::record::parse(&v["message"], &crate::connectors::system)?;
    let failed_at = v["failed_at"].as_u64().ok_or("no failed_at")?;
    Ok(Letter {
        id: format!("{}@{failed_at}", message.id),
        route: text("route")?,
        error_kind: text("error_kind")?,
        message,
    })
}

/// The ids of the letters replayed, one per line, appended and synced as each batch is done.
pub struct Record {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl Record {
    /// The record beside `letters` (`{letters}.replayed`).
    pub fn open(letters: &Path) -> std::io::Result<Self> {
        let mut name = letters.as_os_str().to_owned();
        name.push(".replayed");
        let path = PathBuf::from(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(Record {
            path,
            file: Mutex::new(file),
        })
    }

    /// The ids recorded so far.
    pub fn done(&self) -> HashSet<String> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        text.lines().map(str::to_owned).collect()
    }

    /// Records `ids` as replayed, durably.
    pub fn add<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> std::io::Result<()> {
        let mut text = String::new();
        for id in ids {
            text.push_str(id);
            text.push('\n');
        }
        if text.is_empty() {
            return Ok(());
        }
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(text.as_bytes())?;
        file.sync_data()
    }
}
