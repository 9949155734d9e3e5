//! Sources: where flows take messages from. The pipeline sees only `Delivery` and `Acker`
//! (`source`). MQTT shared-subscription consumers are one folder (`mqtt/`); Kafka and RocketMQ
//! consumer-group members are run by `records` on the `Reader` their kind opens; `status` is
//! what each consumer shows the operator.

pub mod mqtt;
pub mod records;
mod source;
mod status;

pub use records::{ReadSpec, Reader, StartFrom};
pub use source::{Acker, Delivery};
pub use status::ConsumerStatus;
