//! Sinks: where routes deliver. Each connection kind is a folder (`kafka/`, `rocketmq/`,
//! `file/`, `http/`, `exec/`, `scf/`) that implements `SinkKind` (its settings, their checks, its client and a route's sink), and one
//! line in `registry.rs`. The runtime side is the small `Sink` trait: send a batch, get one
//! outcome per message, each failure saying whether to retry.

pub mod exec;
pub mod file;
mod function;
pub mod http;
pub mod kafka;
mod kind;
pub mod mqtt;
mod registry;
pub mod rocketmq;
pub mod scf;
mod sink;

pub use kind::{
    resolve_relative, BoxError, Connection, ConnectionConfig, Kind, OpenReader, RouteContext,
    RouteSinkConfig, SinkKind,
};
pub use registry::{kind, KINDS};
pub use sink::{Retry, Sink, SinkError};
