//! `type = "exec"`: the settings of a local command that takes the function event on stdin,
//! their checks and the kind's entry point (`impl Connector for Exec`). Every `///` comment on a
//! field is user documentation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::sink::{Command, ExecSink};
use crate::config::{Check, Secret};
use crate::connectors::{BoxError, Connector, RouteContext, Sink};

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
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ExecRouteConfig {
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

pub struct Exec;

impl Connector for Exec {
    const NAME: &'static str = "exec";
    /// Like the managed function triggers: runs in parallel unless a route asks for order.
    const ORDERED_BY_DEFAULT: bool = false;
    type ConnectionConfig = ExecConnectionConfig;
    type RouteConfig = ExecRouteConfig;
    type Connection = Arc<Command>;

    fn resolve_paths(c: &mut ExecConnectionConfig, base: &Path) {
        if let Some(program) = c.command.first_mut() {
            if program.contains('/') && Path::new(program.as_str()).is_relative() {
                // Absolute, so that neither `working_dir` nor the bridge's own folder changes
                // which program runs.
                let joined = base.join(&*program);
                let path = std::path::absolute(&joined).unwrap_or(joined);
                *program = path.to_string_lossy().into_owned();
            }
        }
        if let Some(dir) = c.working_dir.as_mut().filter(|d| d.is_relative()) {
            let joined = base.join(&*dir);
            *dir = std::path::absolute(&joined).unwrap_or(joined);
        }
    }

    fn check_connection(c: &ExecConnectionConfig, check: &mut Check<'_>) {
        match c.command.first() {
            None => check.field("command", "empty: name the program to run"),
            Some(program) => {
                if let Err(e) = find_program(program) {
                    check.field("command", e);
                }
            }
        }
        if let Some(dir) = c.working_dir.as_ref().filter(|d| !d.is_dir()) {
            check.field("working_dir", format!("{} is not a folder", dir.display()));
        }
        if c.timeout < Duration::from_millis(100) {
            check.field("timeout", "must be at least 100ms");
        }
        if !(1..=256).contains(&c.max_processes) {
            check.field("max_processes", "must be 1 to 256");
        }
        if c.max_request_bytes < 1024 {
            check.field("max_request_bytes", "must be at least 1024");
        }
        for name in c.env.keys() {
            if name.is_empty() || name.contains(['=', '\0']) {
                check.field(&format!("env.{name}"), "not a valid variable name");
            }
        }
    }

    fn check_route(_: &ExecRouteConfig, _: &mut Check<'_>) {}

    async fn connect(_name: &str, c: &ExecConnectionConfig) -> Result<Arc<Command>, BoxError> {
        let program = find_program(c.command.first().map_or("", String::as_str))?;
        Ok(Arc::new(Command::new(program, c)))
    }

    fn route_sink(
        command: &Arc<Command>,
        context: &RouteContext<'_>,
        route: &ExecRouteConfig,
    ) -> Result<Arc<dyn Sink>, BoxError> {
        Ok(Arc::new(ExecSink::new(
            command.clone(),
            context.name,
            route.base64_payload,
        )))
    }

    async fn health_check(command: &Arc<Command>) -> Result<String, BoxError> {
        find_program(&command.program.to_string_lossy())
            .map(|p| format!("{} is executable", p.display()))
            .map_err(Into::into)
    }
}

/// The program's path: as given when it holds a `/`, else found in `PATH`; it must be an
/// executable file.
fn find_program(program: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.is_empty() {
        return Err("empty: name the program to run".into());
    }
    if program.contains('/') {
        let path = PathBuf::from(program);
        return match (path.exists(), executable(&path)) {
            (false, _) => Err(format!("{program} does not exist")),
            (true, false) => Err(format!("{program} is not an executable file")),
            (true, true) => Ok(path),
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
        .ok_or_else(|| format!("{program} is not an executable in PATH"))
}
