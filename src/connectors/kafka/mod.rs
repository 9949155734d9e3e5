//! The Kafka sink: its settings (`config`) and kind entry (`kind`), one idempotent `acks=all`
//! producer per connection (`connection`), a per-route view that renders topic, key and headers
//! (`sink`, `headers`), the map of librdkafka errors to retriable or permanent (`error`), and
//! a consumer-group member as a route's source (`source`).

mod config;
mod connection;
mod error;
mod headers;
mod kind;
mod sink;
mod source;

pub use config::{Compression, KafkaConnectionConfig, KafkaRouteConfig};
use connection::LastError;
pub use connection::{client_config, ConfigRefused, KafkaConnection};
pub use error::KafkaSinkError;
pub use kind::Kafka;
pub use sink::KafkaRouteSink;
