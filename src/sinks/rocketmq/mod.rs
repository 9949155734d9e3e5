//! The `rocketmq` kind: MQTT → RocketMQ through rocketmq-client-rust's producer. Its settings
//! (`config`), the producer and error table (`connection`), the properties a message carries
//! (`properties`), its kind entry (`kind`) and a route's sink (`sink`).

mod config;
mod connection;
mod kind;
mod properties;
mod sink;

pub use config::{RocketmqConnectionConfig, RocketmqRouteConfig};
pub use connection::{acl_hook, client_runtime, describe};
pub use kind::Rocketmq;
