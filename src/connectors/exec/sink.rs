//! Running the command: one run per event (the batch cut to `max_request_bytes`), the event on
//! stdin, stdout and stderr read together and logged (truncated), at most `max_processes` runs
//! at once per connection. Exit 0 delivers; any other exit, a death by signal or the timeout
//! (which kills the whole process group) is a failure of the function (attempts, then dead
//! letter); a command that cannot be started is the bridge's settings refused (held, retried
//! slowly).

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use super::config::ExecConnectionConfig;
use crate::connectors::function::{invoke_in_turn, Limit};
use crate::events;
use crate::flow::{Retry, Sink, SinkError};
use crate::message::Message;
use crate::settings::Secret;

/// Variables of the bridge's own environment a command gets without `inherit_env`: where it
/// is, who runs it, its language and time zone; none of them holds a secret.
const PASSED_ON: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
];

fn passed_on(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    PASSED_ON.contains(&name.as_ref()) || name.starts_with("LC_")
}

/// The most of a run's output kept for the log.
const KEPT_OUTPUT: usize = 4096;

/// An exec connection: the command and the bound on runs at once.
pub struct Command {
    pub(super) program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, Secret)>,
    inherit_env: bool,
    working_dir: Option<PathBuf>,
    timeout: Duration,
    max_request_bytes: usize,
    slots: Semaphore,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{program} exited with {status}{output}")]
    Failed {
        program: String,
        status: ExitStatus,
        output: String,
    },
    #[error("{program} ran longer than {timeout:?} and was killed{output}")]
    Timeout {
        program: String,
        timeout: Duration,
        output: String,
    },
    #[error("cannot run {program}: {error}")]
    Spawn {
        program: String,
        error: std::io::Error,
    },
}

impl Command {
    pub fn new(program: PathBuf, c: &ExecConnectionConfig) -> Self {
        Command {
            program,
            args: c.command.iter().skip(1).cloned().collect(),
            env: c.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            inherit_env: c.inherit_env,
            working_dir: c.working_dir.clone(),
            timeout: c.timeout,
            max_request_bytes: c.max_request_bytes,
            slots: Semaphore::new(c.max_processes),
        }
    }

    fn name(&self) -> String {
        self.program.display().to_string()
    }

    /// One run with `event` on stdin.
    async fn run(&self, route: &str, event: Vec<u8>) -> Result<(), SinkError> {
        // The semaphore is never closed.
        let _slot = self.slots.acquire().await.expect("open semaphore");
        let mut child = self.command(route).spawn().map_err(|error| {
            let retry = match error.kind() {
                // Out of processes or memory for a moment.
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::OutOfMemory => {
                    Retry::Retriable
                }
                _ => Retry::Configuration,
            };
            let program = self.name();
            SinkError::new("spawn_failed", retry, ExecError::Spawn { program, error })
        })?;
        // Killed with everything it started if this run is abandoned (a hard stop) or
        // times out; left alone once it exited by itself.
        let mut group = Group(child.id());
        let stdin = child.stdin.take();
        let readers = (
            Reader::start(child.stdout.take()),
            Reader::start(child.stderr.take()),
        );
        let writer = tokio::spawn(async move {
            if let Some(mut stdin) = stdin {
                // A command that does not read its input may close it early: its exit status
                // still decides.
                let _ = stdin.write_all(&event).await;
            }
        });
        let status = tokio::time::timeout(self.timeout, child.wait()).await;
        writer.abort();
        if status.is_err() {
            group.kill();
            let _ = child.wait().await;
        }
        group.disarm();
        // Whatever the command started in the background may hold the pipes open: its output
        // is taken for a moment, not waited for.
        let (out, err) = (readers.0.finish().await, readers.1.finish().await);
        self.outcome(route, status, join_output(&out, &err))
    }

    /// The command for one run: a clean environment (unless `inherit_env`), the
    /// connection's `env`, the route's name, piped standard streams, a process group of its own.
    fn command(&self, route: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.program);
        if !self.inherit_env {
            command
                .env_clear()
                .envs(std::env::vars_os().filter(|(k, _)| passed_on(k)));
        }
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v.expose())))
            .env("MQBRIDGE_ROUTE", route)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a timeout kills what it started too.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &self.working_dir {
            command.current_dir(dir);
        }
        command
    }

    /// What a run came to: its exit status (or the timeout) and its output.
    fn outcome(
        &self,
        route: &str,
        status: Result<std::io::Result<std::process::ExitStatus>, tokio::time::error::Elapsed>,
        output: String,
    ) -> Result<(), SinkError> {
        let program = self.name();
        let Ok(status) = status else {
            return Err(SinkError::new(
                "timeout",
                Retry::Attempts,
                ExecError::Timeout {
                    program,
                    timeout: self.timeout,
                    output: quote(&output),
                },
            ));
        };
        let status = status.map_err(|error| {
            let program = self.name();
            SinkError::new(
                "spawn_failed",
                Retry::Retriable,
                ExecError::Spawn { program, error },
            )
        })?;
        events::FunctionOutput {
            route,
            program: &program,
            output: &output,
            failed: !status.success(),
        }
        .emit();
        match status.success() {
            true => Ok(()),
            false => Err(SinkError::new(
                "function_error",
                Retry::Attempts,
                ExecError::Failed {
                    program,
                    status,
                    output: quote(&output),
                },
            )),
        }
    }
}

/// A run's process group (the command and whatever it started), killed when dropped armed.
struct Group(Option<u32>);

impl Group {
    fn kill(&self) {
        if let Some(pgid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill only sends a signal; the group is the command's own
            // (process_group(0)).
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How long output is still taken once the command has exited.
const OUTPUT_GRACE: Duration = Duration::from_millis(300);

/// Reads a pipe to its end in a task of its own, keeping the first `KEPT_OUTPUT` bytes.
struct Reader {
    kept: Arc<std::sync::Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Reader {
    fn start(pipe: Option<impl AsyncRead + Unpin + Send + 'static>) -> Self {
        let kept = Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = kept.clone();
        let task = tokio::spawn(async move {
            let Some(mut pipe) = pipe else { return };
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = pipe.read(&mut buf).await {
                let mut kept = into.lock().unwrap_or_else(|p| p.into_inner());
                let room = KEPT_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        });
        Reader { kept, task }
    }

    /// What was read once the pipe closed, or once the grace passed (a process the command
    /// left running may keep it open).
    async fn finish(mut self) -> Vec<u8> {
        if tokio::time::timeout(OUTPUT_GRACE, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
        std::mem::take(&mut *self.kept.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// `": output"`, or nothing when there is none.
fn quote(output: &str) -> String {
    match output.is_empty() {
        true => String::new(),
        false => format!(": {output}"),
    }
}

/// stdout then stderr, as text, trimmed.
fn join_output(out: &[u8], err: &[u8]) -> String {
    let text = |b: &[u8]| {
        let mut s = String::from_utf8_lossy(b).trim().to_owned();
        if b.len() >= KEPT_OUTPUT {
            s.push_str("...");
        }
        s
    };
    let (out, err) = (text(out), text(err));
    match (out.is_empty(), err.is_empty()) {
        (true, _) => err,
        (false, true) => out,
        (false, false) => format!("{out}\n{err}"),
    }
}

/// A route's sink on an exec connection.
pub struct ExecSink {
    command: Arc<Command>,
    route: Arc<str>,
    base64: bool,
}

impl ExecSink {
    pub fn new(command: Arc<Command>, route: &str, base64: bool) -> Self {
        ExecSink {
            command,
            route: route.into(),
            base64,
        }
    }
}

#[async_trait]
impl Sink for ExecSink {
    async fn send(&self, batch: &[&Message]) -> Vec<Result<(), SinkError>> {
        let limit = Limit {
            bytes: self.command.max_request_bytes,
            setting: "max_request_bytes",
            overhead: 0,
            escaped: false,
        };
        invoke_in_turn(&self.route, batch, self.base64, limit, |event| {
            self.command.run(&self.route, event)
        })
        .await
    }
}
