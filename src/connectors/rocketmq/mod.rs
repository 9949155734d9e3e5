//! RocketMQ, both ways, through rocketmq-client-rust: its settings (`config`), the producer and
//! error table (`connection`), the properties a message carries and the names under which they
//! carry MQTT's fields (`properties`), its kind entry (`kind`), a route's sink (`sink`) and a
//! consumer-group member as a route's source (`source`).

mod config;
mod connection;
mod kind;
mod properties;
mod sink;
mod source;

pub use config::{RocketmqConnectionConfig, RocketmqSinkConfig, RocketmqSourceConfig};
pub use connection::{acl_hook, client_runtime, describe};
pub use kind::Rocketmq;
pub use properties::ROCKETMQ;
