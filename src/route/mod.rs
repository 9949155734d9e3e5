//! Routes: a route's consumers (`start`), each with a worker that batches what its consumer
//! received and acknowledges it in order (`worker`) once delivery, retries and the dead-letter
//! path are done with it (`deliver`).

mod deliver;
mod start;
mod worker;

pub use start::{start, RouteContext};
