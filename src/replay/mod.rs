//! `mqbridge replay`: dead letters sent again through the routes they came from, once what
//! refused them is mended. A letter a rule refused (`schema_invalid`, `transform_error`) runs
//! through its route's current rules; any other went to the route's sink and goes there again.
//! Each route's letters run on the route's own pipeline (`Supervisor::start_with`, fed by
//! `source.rs`), so order, retries and dead letters are those of the route: a letter that
//! fails again becomes a new dead letter. What was replayed (delivered, filtered or dead-
//! lettered again) is recorded beside the letters (`FILE.replayed`, one letter's id per line,
//! written before the next batch is taken), and a second run skips it.
//!
//! The letters are read from a dead-letter file (`[dead_letter] path`, JSON lines), its record
//! beside it; or from a Kafka topic a `dead_letter` connection wrote (`kafka:CONNECTION/TOPIC`),
//! its record under `data_dir/replayed/`.

mod letters;
mod source;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::control::{connect_all, RunError};
use crate::dead_letter::DeadLetter;
use crate::route::{Shared, Supervisor};

pub use letters::Letter;

/// Which letters to send again.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub route: Option<String>,
    pub error_kind: Option<String>,
}

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Delivered to the route's sink (or filtered by its current rules: `filtered`).
    pub replayed: u64,
    pub filtered: u64,
    /// Failed again, and written to the route's dead-letter destination.
    pub dead_lettered: u64,
    /// Replayed by an earlier run.
    pub already: u64,
    /// Not asked for (`--route`, `--error-kind`), or of a route the configuration does not
    /// run.
    pub skipped: u64,
    /// Lines that are not dead letters.
    pub unreadable: u64,
}

/// Where the letters are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Letters {
    File(PathBuf),
    /// A Kafka topic on a connection of the configuration.
    Kafka {
        connection: String,
        topic: String,
    },
}

impl Letters {
    /// `kafka:CONNECTION/TOPIC`, or a file's path.
    pub fn parse(s: &str) -> Self {
        let kafka = s
            .strip_prefix("kafka:")
            .and_then(|rest| rest.split_once('/'));
        match kafka {
            Some((connection, topic)) if !connection.is_empty() && !topic.is_empty() => {
                Letters::Kafka {
                    connection: connection.to_owned(),
                    topic: topic.to_owned(),
                }
            }
            _ => Letters::File(s.into()),
        }
    }

    /// Where the record of what was replayed from them is kept.
    fn record(&self, config: &Config) -> PathBuf {
        match self {
            Letters::File(path) => {
                let mut name = path.as_os_str().to_owned();
                name.push(".replayed");
                name.into()
            }
            Letters::Kafka { connection, topic } => config
                .data_dir
                .join("replayed")
                .join(format!("kafka-{connection}-{topic}.replayed")),
        }
    }

    fn read(&self, config: &Config) -> Result<letters::Read, ReplayError> {
        match self {
            Letters::File(path) => {
                letters::read(path).map_err(|e| ReplayError::Read(path.clone(), e))
            }
            Letters::Kafka { connection, topic } => {
                let named = config.connections.get(connection);
                let read = named.and_then(|c| c.read_topic(topic));
                let records = read.ok_or_else(|| ReplayError::NoKafka(connection.clone()))?;
                let records = records.map_err(|e| {
                    ReplayError::Kafka(format!("kafka:{connection}/{topic}"), e.to_string())
                })?;
                Ok(letters::from_records(records))
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error(
        "no connection \"{0}\" in the configuration whose topics can be read (a kafka connection)"
    )]
    NoKafka(String),
    #[error("{0}: {1}")]
    Kafka(String, String),
    #[error(transparent)]
    Run(#[from] RunError),
}

/// The error kinds of letters a rule refused: they run through the rules again.
const RULE_KINDS: &[&str] = &["schema_invalid", "transform_error"];

/// Sends again the letters that `filter` asks for, through `config`'s routes.
pub async fn replay(
    config: &Config,
    from: &Letters,
    filter: &Filter,
) -> Result<Summary, ReplayError> {
    let record_path = from.record(config);
    let record =
        letters::Record::open(&record_path).map_err(|e| ReplayError::Read(record_path, e))?;
    let read = {
        let (from, config) = (from.clone(), config.clone());
        tokio::task::spawn_blocking(move || from.read(&config))
            .await
            .map_err(|e| ReplayError::Kafka("reading the letters".into(), e.to_string()))??
    };
    let mut summary = Summary {
        unreadable: read.unreadable,
        ..Summary::default()
    };
    let done = record.done();
    let mut chosen: Vec<Letter> = Vec::new();
    let mut seen = HashSet::new();
    for letter in read.letters {
        let route = config.routes.iter().find(|r| r.name == letter.route);
        let wanted = filter.route.as_ref().is_none_or(|r| *r == letter.route)
            && filter
                .error_kind
                .as_ref()
                .is_none_or(|k| *k == letter.error_kind);
        if done.contains(&letter.id) || !seen.insert(letter.id.clone()) {
            summary.already += 1;
        } else if !wanted || route.is_none() {
            summary.skipped += 1;
        } else {
            chosen.push(letter);
        }
    }
    if chosen.is_empty() {
        return Ok(summary);
    }
    let connections = connect_all(config).await?;
    let connection = |name: &str| connections.get(name).cloned();
    let dead_letter = DeadLetter::build(&config.dead_letter, config.mqtt.as_ref(), connection)
        .await
        .map_err(RunError::DeadLetter)?;
    let dead_letter = Arc::new(dead_letter);
    let mut supervisor = Supervisor::new(Shared {
        connections: Arc::new(connections.clone()),
        dead_letter: dead_letter.clone(),
        window_bytes: config.window_bytes(),
        data_dir: config.data_dir.clone(),
        budget: crate::flow::Budget::new(config.memory_budget),
        shutdown: tokio_util::sync::CancellationToken::new(),
    });
    let record = Arc::new(record);
    // A route's letters of each kind in turn: a route runs once at a time.
    for through_rules in [true, false] {
        for route in &config.routes {
            let letters: Vec<Letter> = chosen
                .iter()
                .filter(|l| l.route == route.name)
                .filter(|l| RULE_KINDS.contains(&l.error_kind.as_str()) == through_rules)
                .cloned()
                .collect();
            if letters.is_empty() {
                continue;
            }
            let record = record.clone();
            supervisor
                .start_with(route, through_rules, move |context| {
                    Box::new(source::LetterSource::new(letters, record, context))
                })
                .map_err(RunError::from)?;
        }
        for (_, stats) in supervisor.finished().await {
            summary.replayed += stats.delivered;
            summary.filtered += stats.filtered;
            summary.dead_lettered += stats.dead_lettered;
        }
    }
    dead_letter.close().await;
    for c in connections.values() {
        c.flush(std::time::Duration::from_secs(5)).await;
    }
    Ok(summary)
}
