//! What every part of a flow shares, below the engine and the connectors: the contract of a
//! sink (`Sink`, with each failure's `Retry` class) and of a source (`Delivery`, `Acker`), the
//! flow's pause switch, the bridge's memory budget (`Budget`), where it sends dead letters (`DeadLetters`), what a consumer and a flow show the operator (`ConsumerStatus`,
//! `RouteStats`), and the boxed error of a client. Nothing here imports a module above it.

pub mod budget;
mod dead_letter;
mod pause;
mod sink;
mod source;
mod stats;
mod status;

pub use budget::{cost, Budget, Share, DEFAULT_BUDGET, RESERVE};
pub use dead_letter::{DeadLetterEntry, DeadLetters};
pub use pause::Pause;
pub use sink::{Retry, Sink, SinkError};
pub use source::{intake, Acker, Delivery, Intake, IntakeSender};
pub use stats::{RouteStats, StatsSnapshot};
pub use status::ConsumerStatus;

/// An error from building, checking or running a client, with its cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
