//! The MQTT side: client options (`options`), shared-subscription consumers with in-order,
//! epoch-checked acks (`consumer`), and a publisher that waits for PUBACKs (`publisher`).

mod consumer;
mod options;
mod publisher;

pub use consumer::{start as start_consumer, AckToken, Acker, ConsumerSpec, Delivery};
pub use options::{Endpoint, OptionsError};
pub use publisher::{PublishError, Publisher};
