//! The `exec` kind: a local command per batch, for handlers that run next to the bridge on a
//! gateway host. Its settings (`config`), its kind entry (`kind`) and a route's sink (`sink`).

mod config;
mod kind;
mod sink;

pub use config::{ExecConnectionConfig, ExecSinkConfig};
pub use kind::Exec;
