//! Kafka, both ways: its settings (`config`) and kind entry (`kind`), one idempotent
//! `acks=all` producer per connection (`connection`), a per-route sink that renders topic, key
//! and headers (`sink`), the header names of a message's MQTT metadata, written by the sink and
//! read back where a record goes to MQTT (`headers`), the map of librdkafka errors to retriable
//! or permanent (`error`), and a consumer-group member as a route's source (`source`).

mod config;
mod connection;
mod error;
mod headers;
mod kind;
mod read_all;
mod sink;
mod source;

pub use config::{Compression, KafkaConnectionConfig, KafkaSinkConfig, KafkaSourceConfig};
use connection::LastError;
pub use connection::{client_config, ConfigRefused, KafkaConnection};
pub use error::KafkaSinkError;
use headers::message;
pub use headers::KAFKA;
pub use kind::Kafka;
use read_all::{read_all, Record};
pub use sink::KafkaRouteSink;
