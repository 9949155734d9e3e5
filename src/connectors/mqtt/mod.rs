//! MQTT, both ways: a broker (`[mqtt]`, the default one, or `[connections.NAME]` with
//! `type = "mqtt"`) and everything the bridge knows of it.
//! - its settings and a route's keys for it (`config`), the kind's entry (`kind`) and the
//!   probes of `mqbridge check` (`probe`);
//! - the client: options for one client (`options`) and a publisher that waits for PUBACKs
//!   (`publisher`, used by the dead-letter topic and the sink);
//! - as a source: consumer connections in a route's shared-subscription group (`source`,
//!   `consumer`), shared by the routes that deliver to one connection (`pool`), their
//!   acknowledgements (`acker`) and the PUBLISH-to-message conversion (`convert`);
//! - as a sink: the topic template (`template`), the PUBLISH a message becomes
//!   (`publication`) and the sink that publishes batches pipelined (`sink`).

mod acker;
mod config;
mod consumer;
mod convert;
mod kind;
mod options;
mod pool;
mod probe;
pub(crate) mod publication;
mod publisher;
mod retire;
mod sink;
mod source;
mod template;

pub use acker::{AckToken, Acker};
pub use config::{
    MqttConfig, MqttSinkConfig, MqttSourceConfig, PublisherProperties, TlsConfig,
    PROTOCOL_MAX_PACKET_SIZE,
};
pub use kind::Mqtt;
pub use options::{Endpoint, OptionsError};
pub use publication::PublishSettings;
pub use publisher::{Ack, Publication, PublishError, Publisher};
pub use sink::MqttSink;
pub use template::{check_mqtt_chars, TopicTemplate};
