//! The commented example that `mqbridge example-config` prints; a test keeps it valid.

pub const EXAMPLE: &str = include_str!("../../config/example.toml");
