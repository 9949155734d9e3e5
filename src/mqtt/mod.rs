//! MQTT client plumbing shared by the bridge's clients: options for one client (`options`) and
//! a publisher that waits for PUBACKs (`publisher`). The consumers are the MQTT source
//! (`sources/mqtt/`).

mod options;
mod publisher;

pub use options::{Endpoint, OptionsError};
pub use publisher::{Ack, Publication, PublishError, Publisher};
