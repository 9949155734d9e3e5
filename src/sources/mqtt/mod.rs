//! The MQTT source: one consumer per client in a route's shared-subscription group
//! (`consumer`), its acknowledgements (`acker`) the PUBLISH-to-message conversion
//! (`convert`), and what the consumers show the operator, with the route's pause switch
//! (`status`).

mod acker;
mod consumer;
mod convert;
mod status;

pub use acker::{AckToken, Acker};
pub use consumer::{start, ConsumerSpec, PollTask};
pub use status::ConsumerStatus;
