//! MQTT as a sink: what flows read from Kafka or RocketMQ publish to the broker (downlinks).
//! The topic template (`template`), the PUBLISH a message becomes (`publication`) and the sink
//! that publishes batches pipelined over the flow's own connections (`sink`).

pub(crate) mod publication;
mod sink;
mod template;

pub use publication::{check_mqtt_chars, PublishSettings};
pub use sink::MqttSink;
pub use template::TopicTemplate;
