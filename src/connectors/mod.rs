//! Connectors: one folder per external system, holding everything the bridge knows of it: its
//! settings and their checks, its client, its sink, its source where the system can be read
//! (MQTT, Kafka, RocketMQ), and its metadata mapping both ways. A connection kind (`mqtt/`,
//! `kafka/`, `rocketmq/`, `file/`, `http/`, `exec/`, `scf/`) implements `Connector` and has one
//! line in `registry.rs`; what the function kinds share is in `function/`. A sink is the small
//! `flow::Sink` trait (send a batch, get one outcome per message, each failure saying whether
//! to retry); a source is a `pipeline::Source`.

mod bound;
pub mod exec;
pub mod file;
mod function;
pub mod http;
pub mod kafka;
mod kind;
mod live;
pub mod mqtt;
mod registry;
pub mod rocketmq;
pub mod scf;

pub use bound::{Connection, ConnectionConfig, SinkSettings, SourceSettings};
pub use kind::{Connector, NoSource, SinkContext, SourceAt};
pub use registry::{kind, system, Kind, KINDS, SYSTEMS};
