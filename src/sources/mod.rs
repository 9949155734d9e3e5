//! Sources: where routes take messages from. The pipeline sees only `Delivery` and `Acker`
//! (`source`); each kind of source is a folder (`mqtt/`: shared-subscription consumers).

pub mod mqtt;
mod source;

pub use source::{Acker, Delivery};
