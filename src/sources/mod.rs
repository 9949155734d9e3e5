//! The source side of the engine. The pipeline sees only `Delivery` and `Acker` (`source`);
//! each connector's source hands over through them (MQTT consumers: `connectors/mqtt/`). A
//! Kafka or RocketMQ group member is a `Reader` its connector opens, run for a flow by
//! `records`, which keeps its lag (`lag`); `status` is what each consumer shows the operator.

pub mod lag;
pub mod records;

pub use records::{ReadSpec, Reader, StartFrom};
