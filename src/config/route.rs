//! A route: a source, its rules, and a sink. `[[routes]]` and `[[downlinks]]` are two spellings
//! of it (`Spelling`); both load into one `RouteConfig`, whose source and sink settings are bound
//! to their connections' kinds when the file is read.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::buffer::BufferConfig;
use crate::connectors::{SinkSettings, SourceSettings};
use crate::rules::RuleSpec;

/// The connection name of `[mqtt]`, the default broker: a route without a `source` reads it,
/// and a `[[downlinks]]` entry delivers to it.
pub const DEFAULT_BROKER: &str = "mqtt";

/// A route, as it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    /// Unique among routes and downlinks; used in client ids, metrics and logs.
    pub name: String,
    /// What it reads: a connection and that kind's source settings.
    pub source: SourceSettings,
    /// The connection it delivers to.
    pub connection: String,
    /// That connection's kind's settings for the route.
    pub sink: SinkSettings,
    pub batch_size: usize,
    pub max_wait: Duration,
    /// Its own setting; `is_ordered` gives what holds.
    pub ordered: Option<bool>,
    pub concurrency: usize,
    pub max_attempts: u32,
    /// Where it keeps what its source handed over and its sink has not yet taken.
    pub buffer: BufferConfig,
    /// Its own dead-letter destination (`dead_letter = { connection = "NAME", ... }`); `None`:
    /// the bridge's `[dead_letter]`.
    pub dead_letter: Option<DeadLetterSink>,
    pub rules: RuleSpec,
    /// The schema file's content when the configuration was read, so that a reload restarts
    /// the route when the file changed though its name did not.
    pub schema_read: Option<Vec<u8>>,
    pub enabled: bool,
    pub spelling: Spelling,
}

/// A route's dead-letter destination: a connection and that kind's sink settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterSink {
    pub connection: String,
    pub sink: SinkSettings,
}

/// How the file wrote a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spelling {
    /// `[[routes]]`.
    Route,
    /// `[[downlinks]]`: a Kafka or RocketMQ topic to the default broker, with a downlink's keys
    /// and defaults.
    Downlink,
}

impl Spelling {
    /// "route" or "downlink", as the file says: how logs, problems and the status name it.
    pub fn what(self) -> &'static str {
        match self {
            Spelling::Route => "route",
            Spelling::Downlink => "downlink",
        }
    }
}

impl RouteConfig {
    /// Whether the route keeps each key's order (its own setting, else its sink kind's default).
    pub fn is_ordered(&self) -> bool {
        match self.spelling {
            Spelling::Downlink => true,
            Spelling::Route => self
                .ordered
                .unwrap_or_else(|| self.sink.ordered_by_default()),
        }
    }

    /// What the clients it opens of its sink's system are named from (after the connection's
    /// client id prefix and before their number): `{route}-out`, or `downlink-{name}-` as
    /// downlinks always named theirs.
    pub fn client(&self) -> String {
        match self.spelling {
            Spelling::Route => format!("{}-out", self.name),
            Spelling::Downlink => format!("downlink-{}-", self.name),
        }
    }

    /// The connections it reads from and delivers to.
    pub fn connections(&self) -> [&str; 2] {
        [self.connection.as_str(), self.source.connection()]
    }
}

/// The keys every route takes (beside its `source` and its sink kind's keys), and those of a
/// downlink, which takes no `connection` of a sink, `max_wait` or `ordered`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RouteKeys {
    /// Unique route name, used in client ids, metrics and logs. Letters, digits, `-` and `_`.
    pub name: String,
    /// Name of the `[connections.NAME]` to deliver to.
    #[serde(default)]
    pub connection: String,
    /// Most messages handed to the sink at once (1 to 10000). Default 500 (a downlink's 256).
    pub batch_size: Option<usize>,
    /// How long a batch may wait to fill up. Default "0s": send what has arrived at once.
    #[serde(default, with = "humantime_serde")]
    pub max_wait: Duration,
    /// Keep each key's order (an MQTT topic's, a partition's or a queue's): at most the sink's
    /// window of batches holding a key's messages is in delivery at a time, so a failed message
    /// is retried before any later batch of its key goes out. Default: the connection kind's
    /// (true for Kafka, MQTT and files, false for functions and RocketMQ).
    pub ordered: Option<bool>,
    /// Batches in delivery at once, across keys (1 to 64). Default 4.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Sends of a message that the destination may fail before the message is dead-lettered
    /// (a function that ran and failed; a failure on the way there is retried without
    /// counting). Default 3 (a downlink's 5).
    pub max_attempts: Option<u32>,
    /// Where the route keeps what its source handed over and its sink has not yet taken:
    /// `{ type = "memory" }` (the default: the backlog waits in the source, within the route's
    /// window) or `{ type = "disk", max_size = "2GiB" }`: a file under `data_dir`, to which a
    /// message is written and fsynced before it is acknowledged to its source, and from which
    /// it is delivered. When the disk buffer is full the route stops reading; nothing is
    /// dropped. `max_size` defaults to "1GiB".
    #[serde(default)]
    pub buffer: BufferConfig,
    /// A condition over each message (Vector Remap Language): a message for which it is
    /// false is acknowledged and not delivered (counted as filtered). See "Rules".
    #[serde(rename = "where")]
    pub filter: Option<String>,
    /// A program over each message (Vector Remap Language) that may reshape its payload, set
    /// its user properties or headers and where it goes, split it into several, or drop it.
    pub transform: Option<String>,
    /// A JSON Schema file (draft 2020-12) each payload must match; one that does not is
    /// dead-lettered (`schema_invalid`).
    pub schema: Option<PathBuf>,
    /// Start this route. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

/// The keys a `[[downlinks]]` entry takes of `RouteKeys`.
pub const DOWNLINK_KEYS: &[&str] = &[
    "name",
    "batch_size",
    "concurrency",
    "max_attempts",
    "buffer",
    "where",
    "transform",
    "schema",
    "enabled",
];

impl RouteKeys {
    /// Its rules, as written.
    pub fn rules(&self) -> RuleSpec {
        RuleSpec {
            filter: self.filter.clone(),
            transform: self.transform.clone(),
            schema: self.schema.clone(),
        }
    }

    /// The keys with the defaults of `spelling`.
    pub fn batch_size(&self, spelling: Spelling) -> usize {
        self.batch_size.unwrap_or(match spelling {
            Spelling::Route => 500,
            Spelling::Downlink => 256,
        })
    }

    pub fn max_attempts(&self, spelling: Spelling) -> u32 {
        self.max_attempts.unwrap_or(match spelling {
            Spelling::Route => 3,
            Spelling::Downlink => 5,
        })
    }

    /// The route these keys make with its source and sink.
    pub fn with(
        self,
        spelling: Spelling,
        source: SourceSettings,
        sink: SinkSettings,
        dead_letter: Option<DeadLetterSink>,
        schema_read: Option<Vec<u8>>,
    ) -> RouteConfig {
        RouteConfig {
            batch_size: self.batch_size(spelling),
            max_attempts: self.max_attempts(spelling),
            buffer: self.buffer,
            dead_letter,
            rules: self.rules(),
            name: self.name,
            source,
            connection: self.connection,
            sink,
            max_wait: self.max_wait,
            ordered: self.ordered,
            concurrency: self.concurrency,
            schema_read,
            enabled: self.enabled,
            spelling,
        }
    }
}

fn default_concurrency() -> usize {
    4
}
fn default_true() -> bool {
    true
}
