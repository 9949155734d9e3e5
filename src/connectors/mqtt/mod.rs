//! MQTT, the broker of `[mqtt]`: everything the bridge knows of it, both ways.
//! - the client: options for one client (`options`) and a publisher that waits for PUBACKs
//!   (`publisher`, used by the dead-letter topic and the sink);
//! - as a source: one consumer per client in a route's shared-subscription group
//!   (`consumer`), its acknowledgements (`acker`) and the PUBLISH-to-message conversion
//!   (`convert`);
//! - as a sink (downlinks): the topic template (`template`), the PUBLISH a message becomes
//!   (`publication`) and the sink that publishes batches pipelined (`sink`).
//!
//! It is not in the registry: there is one broker, configured in `[mqtt]`, not a
//! `[connections.NAME]` kind.

mod acker;
mod consumer;
mod convert;
mod options;
pub(crate) mod publication;
mod publisher;
mod sink;
mod template;

pub use acker::{AckToken, Acker};
pub use consumer::{start, ConsumerSpec, PollTask};
pub use options::{Endpoint, OptionsError};
pub use publication::PublishSettings;
pub use publisher::{Ack, Publication, PublishError, Publisher};
pub use sink::MqttSink;
pub use template::{check_mqtt_chars, TopicTemplate};
