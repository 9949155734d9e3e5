//! The `exec` kind: a local command per batch, for handlers that run next to the bridge on a
//! gateway host. Its settings and kind entry (`config`) and a route's sink (`sink`).

mod config;
mod sink;

pub use config::{Exec, ExecConnectionConfig, ExecRouteConfig};
