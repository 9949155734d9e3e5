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
use crate::config::Secret;
use crate::events;
use crate::message::Message;
use crate::sinks::function::{invoke_in_turn, Limit};
use crate::sinks::{Retry, Sink, SinkError};

/// The most of a run's output kept for the log.
const KEPT_OUTPUT: usize = 4096;

/// An exec connection: the command and the bound on runs at once.
pub struct Command {
    pub(super) program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, Secret)>,
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
        let mut command = tokio::process::Command::new(&self.program);
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
        let mut child = command.spawn().map_err(|error| {
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
        let group = child.id();
        let mut stdin = child.stdin.take();
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let write = async move {
            if let Some(stdin) = stdin.as_mut() {
                // A command that does not read its input may close it early: its exit status
                // still decides.
                let _ = stdin.write_all(&event).await;
            }
            drop(stdin);
        };
        let work = async {
            let ((), out, err, status) =
                tokio::join!(write, read_some(stdout), read_some(stderr), child.wait());
            (out, err, status)
        };
        let program = self.name();
        let (out, err, status) = match tokio::time::timeout(self.timeout, work).await {
            Ok(done) => done,
            Err(_) => {
                kill_group(group);
                let _ = child.wait().await;
                return Err(SinkError::new(
                    "timeout",
                    Retry::Attempts,
                    ExecError::Timeout {
                        program,
                        timeout: self.timeout,
                        output: String::new(),
                    },
                ));
            }
        };
        let output = join_output(&out, &err);
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
                    output: match output.is_empty() {
                        true => String::new(),
                        false => format!(": {output}"),
                    },
                },
            )),
        }
    }
}

/// Kills the process group `pgid` (the command and whatever it started).
fn kill_group(pgid: Option<u32>) {
    if let Some(pgid) = pgid.and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill only sends a signal; the group is the command's own (process_group(0)).
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// Reads a pipe to its end, keeping the first `KEPT_OUTPUT` bytes.
async fn read_some(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let Some(mut pipe) = pipe else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = KEPT_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
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
