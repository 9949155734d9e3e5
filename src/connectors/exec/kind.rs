//! The `exec` kind's entry point (`impl Connector for Exec`): its settings' checks, finding
//! the program, and the sink of a route.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::config::{ExecConnectionConfig, ExecSinkConfig};
use super::sink::{Command, ExecSink};
use crate::connectors::{Connector, NoSource, SinkContext};
use crate::flow::{BoxError, Sink};
use crate::settings::Check;
use crate::template::Vocabulary;

pub struct Exec;

impl Connector for Exec {
    const NAME: &'static str = "exec";
    /// Like the managed function triggers: runs in parallel unless a route asks for order.
    const ORDERED_BY_DEFAULT: bool = false;
    type ConnectionConfig = ExecConnectionConfig;
    type SinkConfig = ExecSinkConfig;
    type SourceConfig = NoSource;
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

    fn check_sink(_: &ExecSinkConfig, _: Vocabulary, _: &mut Check<'_>) {}

    async fn connect(_name: &str, c: &ExecConnectionConfig) -> Result<Arc<Command>, BoxError> {
        let program = find_program(c.command.first().map_or("", String::as_str))?;
        Ok(Arc::new(Command::new(program, c)))
    }

    fn sink(
        command: &Arc<Command>,
        context: &SinkContext<'_>,
        route: &ExecSinkConfig,
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
