//! Routes at run time: the supervisor that starts each one's source, pipeline and sink
//! (`supervisor`) and the handle it keeps per route (`handle`).

mod handle;
mod supervisor;

pub use handle::{RouteHandle, RouteState};
pub use supervisor::{Shared, StartError, Supervisor};
