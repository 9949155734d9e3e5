//! The `rocketmq` kind: MQTT → RocketMQ through rocketmq-client-rust's producer. Its settings
//! (`config`), the producer and error table (`connection`), the properties a message carries
//! (`properties`), its kind entry (`kind`), a route's sink (`sink`) and a consumer-group member
//! as a route's source (`source`).

mod config;
mod connection;
mod kind;
mod properties;
mod sink;
mod source;

pub use config::{RocketmqConnectionConfig, RocketmqRouteConfig};
pub use connection::{acl_hook, client_runtime, describe};
pub use kind::Rocketmq;
