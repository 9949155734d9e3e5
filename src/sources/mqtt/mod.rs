//! The MQTT source: one consumer per client in a route's shared-subscription group
//! (`consumer`), its acknowledgements (`acker`) the PUBLISH-to-message conversion
//! (`convert`).

mod acker;
mod consumer;
mod convert;

pub use acker::{AckToken, Acker};
pub use consumer::{start, ConsumerSpec, PollTask};
