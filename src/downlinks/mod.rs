//! Downlinks: Kafka and RocketMQ topics carried back to the MQTT broker, to reach devices
//! (`[[downlinks]]`). A downlink is a flow like any route, run by the same supervisor and
//! pipeline: its source is a consumer-group member of its topic (`sources::records`), its sink
//! the MQTT broker (`connectors::mqtt`), its order key the partition or queue; offsets are committed
//! only once everything before them was published or dead-lettered, so a failure anywhere means
//! a redelivery, never a loss. This folder holds only its settings and their checks (`config`).

mod config;

pub use crate::connectors::mqtt::TopicTemplate;
pub use crate::sources::StartFrom;
pub use config::{check_names, DownlinkConfig};
