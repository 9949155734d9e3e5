//! The `scf` kind: Tencent Cloud Serverless Cloud Function, invoked through the Cloud API 3.0
//! `Invoke` action. Its settings (`config`), its kind entry (`kind`), the request signing
//! (`tc3`) and a route's sink (`sink`).

mod config;
mod kind;
mod sink;
pub mod tc3;

pub use config::{Invocation, ScfConnectionConfig, ScfSinkConfig};
pub use kind::Scf;
