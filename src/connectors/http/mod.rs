//! The `http` kind: function URLs and webhooks. Its settings (`config`), its kind entry
//! (`kind`) and a route's sink (`sink`).

mod config;
mod kind;
mod sink;

pub use config::{HttpConnectionConfig, HttpSinkConfig};
pub use kind::Http;
