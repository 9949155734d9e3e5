//! Downlinks: Kafka and RocketMQ topics carried back to the MQTT broker, to reach devices
//! (`[[downlinks]]`). A downlink is a consumer-group member of its source topic; each message
//! becomes one MQTT PUBLISH (topic from a template over the message, its headers or properties
//! as user properties, the bridge's origin marker added), published in source order per
//! partition or queue; offsets are committed only once the broker acknowledged every message
//! before them, so a failure anywhere means a redelivery, never a loss.
//!
//! - `config`: the `[[downlinks]]` keys and their checks.
//! - `template`: the `mqtt_topic` template.
//! - `message`: a source message and the PUBLISH it becomes.
//! - `source`, `kafka`, `rocketmq`: the consumers.
//! - `runner`: the running downlink (poll, publish, dead-letter, commit; pause, stop).
//! - `set`: the running downlinks by name.

mod config;
mod kafka;
mod message;
mod rocketmq;
mod runner;
mod set;
mod source;
mod template;

pub use config::{check_names, DownlinkConfig, SourceKind, StartFrom};
pub use message::{Partition, SourceMessage};
pub use runner::{DownlinkHandle, DownlinkShared, DownlinkStats};
pub use set::Downlinks;
pub use template::TopicTemplate;
