//! Flows at run time, routes and downlinks alike: the supervisor that starts each one's source,
//! pipeline and sink (`supervisor`) and the handle it keeps per flow (`handle`).

mod handle;
mod run;
mod supervisor;

pub use handle::{Flow, RouteHandle, RouteState};
pub use supervisor::{Shared, StartError, Supervisor};
