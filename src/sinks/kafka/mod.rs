//! The Kafka sink: one idempotent `acks=all` producer per connection (`connection`), a
//! per-route view that renders topic, key and headers (`sink`, `headers`), and the map of
//! librdkafka errors to retriable or permanent (`error`).

mod connection;
mod error;
mod headers;
mod sink;

pub use connection::{client_config, describe_config_error, KafkaConnection};
pub use error::KafkaSinkError;
pub use headers::headers;
pub use sink::KafkaRouteSink;
