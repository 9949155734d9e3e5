//! `type = "exec"`: the settings of a local command that takes the function event on stdin.
//! Every `///` comment on a field is user documentation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::Secret;

/// `[connections.NAME]` with `type = "exec"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ExecConnectionConfig {
    /// The program and its arguments, run directly (no shell): `["/usr/local/bin/handler",
    /// "--flag"]`. A program without a `/` is looked up in `PATH`; a relative path is taken
    /// from the config file's folder.
    pub command: Vec<String>,
    /// How long one run may take; past it the command's whole process group is killed and the
    /// run counts as a failed attempt. Default "30s".
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Runs at once, across the routes of this connection. Default 4.
    #[serde(default = "default_max_processes")]
    pub max_processes: usize,
    /// The largest event written to one run's stdin, in bytes: a larger batch is split into
    /// several runs, and a message too large alone is dead-lettered (`too_large`). Default
    /// 6291456 (6 MiB).
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// The folder the command runs in. Default: the bridge's.
    pub working_dir: Option<PathBuf>,
    /// Environment variables to set for the command (values may take `${ENV}`; never logged),
    /// beside `MQBRIDGE_ROUTE` and the few the bridge passes on from its own (`PATH`, `HOME`,
    /// `USER`, `LOGNAME`, `LANG`, `LANGUAGE`, `LC_*`, `TZ`, `TMPDIR`).
    #[serde(default)]
    pub env: BTreeMap<String, Secret>,
    /// Pass the bridge's whole environment on to the command. Default false: the bridge's
    /// environment usually holds its secrets (the MQTT password, cloud keys, the admin token,
    /// from a systemd `EnvironmentFile`), and a handler should see only what `env` gives it.
    #[serde(default)]
    pub inherit_env: bool,
}

/// The keys of a `[[routes]]` entry whose connection is an exec one.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ExecSinkConfig {
    /// Put every payload in base64 (`payload_encoding` says so). Default false: the text
    /// itself when it is valid UTF-8, base64 otherwise.
    #[serde(default)]
    pub base64_payload: bool,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_processes() -> usize {
    4
}
fn default_max_request_bytes() -> usize {
    6 * 1024 * 1024
}
