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

/// The letters among `records` (each with where it sat), as a route's `dead_letter` (or
/// `[dead_letter] connection`) wrote them to a topic: the message, and the `mqbridge.*`
/// properties that say its route, why it failed and when. A record without them is counted
/// as unreadable.
pub fn from_records(records: Vec<(String, Message)>) -> Read {
    let mut read = Read {
        letters: Vec::new(),
        unreadable: 0,
    };
    for (place, mut message) in records {
        let user = &mut message.properties.user_properties;
        let mut take = |name: &str| {
            let at = user.iter().position(|(k, _)| k == name)?;
            Some(user.remove(at).1)
        };
        let (route, error_kind) = (take("mqbridge.route"), take("mqbridge.error_kind"));
        for name in ["mqbridge.error", "mqbridge.attempts", "mqbridge.failed_at"] {
            take(name);
        }
        let source_topic = take("source.topic");
        let (Some(route), Some(error_kind)) = (route, error_kind) else {
            read.unreadable += 1;
            tracing::warn!(record = %place, "a record of the dead-letter topic names no route or error kind; skipped");
            continue;
        };
        if let Some(topic) = source_topic {
            message.topic = topic;
            crate::record::restore_origin(&mut message, &crate::connectors::system);
        }
        read.letters.push(Letter {
            id: place,
            route,
            error_kind,
            message,
        });
    }
    read
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
    /// The record at `path`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let path = path.to_owned();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
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
