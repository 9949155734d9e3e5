//! The engine's side of the sources that a consumer group reads (Kafka, RocketMQ): a group
//! member is a `Reader` its connector opens; `records` runs it as a route's source, handing
//! each message over with its partition or queue as order key and committing the offsets the
//! pipeline's acks allow, and keeps its lag (`lag`). (An MQTT broker's consumers are its
//! connector's own: `connectors/mqtt/`.)

pub mod lag;
pub mod records;

pub use records::{Reader, StartFrom};
