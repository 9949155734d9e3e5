//! Operating a running bridge. The loop that owns the routes (`bridge`) takes commands from
//! the admin API, the CLI (through the API) and SIGHUP over one channel (`Control`,
//! `ControlHandle`); `status` is what `/routes` and `/readyz` tell; `reload` applies a new
//! configuration route by route (`plan` decides what changes); `checks` runs the connection
//! checks while running. It knows nothing of the HTTP front end that sends it commands: what a
//! reload changes of `[admin]` goes to the `AdminUpdate` it was given.

mod bridge;
mod checks;
mod plan;
mod reload;
mod status;

use tokio::sync::{mpsc, oneshot};

use crate::flow::BoxError;
use crate::route::StartError;

pub use bridge::{connect_all, run, AdminUpdate};
pub use reload::ReloadReport;
pub use status::{ConsumerView, Overview, Readiness, ReloadOutcome, RouteStatus};

/// Why the bridge stopped, or could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A connection (`connection "NAME"`, or `[mqtt]`) whose client cannot be built.
    #[error("{0}: {1}")]
    Connection(String, #[source] BoxError),
    #[error(transparent)]
    Route(#[from] StartError),
    #[error("{0}")]
    DeadLetter(std::io::Error),
    #[error("admin listener: {0}")]
    Admin(std::io::Error),
    #[error("{0}")]
    RouteFailed(String),
}

/// What the running bridge is asked to do.
pub(crate) enum Command {
    Overview(oneshot::Sender<Overview>),
    SetPaused {
        route: String,
        paused: bool,
        reply: oneshot::Sender<Result<RouteStatus, ControlError>>,
    },
    Reload(oneshot::Sender<Result<ReloadReport, ControlError>>),
    Readiness(oneshot::Sender<Readiness>),
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no route or downlink \"{0}\" is running")]
    NoRoute(String),
    #[error("the bridge is stopping")]
    Stopped,
    #[error("the configuration was not read from a file, so there is nothing to read again")]
    NoSource,
    #[error("the new configuration is not valid; the running one stays:\n{0}")]
    Invalid(String),
    #[error("the reload failed; the running configuration stays: {0}")]
    Failed(String),
}

/// The commands' channel: `run` takes it, and hands out handles.
pub struct Control {
    handle: ControlHandle,
    pub(crate) rx: mpsc::Receiver<Command>,
}

impl Control {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel(64);
        Control {
            handle: ControlHandle { tx },
            rx,
        }
    }

    /// A handle for whoever sends commands (the admin API, a signal handler).
    pub fn handle(&self) -> ControlHandle {
        self.handle.clone()
    }
}

impl Default for Control {
    fn default() -> Self {
        Self::new()
    }
}

/// Sends commands to the running bridge.
#[derive(Clone)]
pub struct ControlHandle {
    tx: mpsc::Sender<Command>,
}

impl ControlHandle {
    async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(command(reply)).await.ok()?;
        answer.await.ok()
    }

    /// Every route's state and counts.
    pub async fn overview(&self) -> Result<Overview, ControlError> {
        self.ask(Command::Overview)
            .await
            .ok_or(ControlError::Stopped)
    }

    /// Pauses (or resumes) a route: its consumers stay connected and read nothing more; what
    /// it holds is delivered and acknowledged. Or a downlink: it consumes nothing more, keeping
    /// its group's offsets and its MQTT session; the batch in hand is published and committed.
    pub async fn set_paused(&self, route: &str, paused: bool) -> Result<RouteStatus, ControlError> {
        let route = route.to_owned();
        self.ask(|reply| Command::SetPaused {
            route,
            paused,
            reply,
        })
        .await
        .ok_or(ControlError::Stopped)?
    }

    /// Reads the configuration file again and applies what changed.
    pub async fn reload(&self) -> Result<ReloadReport, ControlError> {
        self.ask(Command::Reload)
            .await
            .ok_or(ControlError::Stopped)?
    }

    pub async fn readiness(&self) -> Result<Readiness, ControlError> {
        self.ask(Command::Readiness)
            .await
            .ok_or(ControlError::Stopped)
    }
}
