//! `type = "scf"`: the connection's settings (region, credentials, endpoint) and the keys an
//! SCF route takes (the function and how to invoke it). Every `///` comment on a field is user
//! documentation.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::Secret;

/// `[connections.NAME]` with `type = "scf"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ScfConnectionConfig {
    /// The functions' region, such as "ap-guangzhou" (sent as `X-TC-Region`).
    pub region: String,
    /// The API key's SecretId (may take `${ENV}`).
    pub secret_id: Option<Secret>,
    /// Read the SecretId from this file instead.
    pub secret_id_file: Option<PathBuf>,
    /// The API key's SecretKey (`${ENV}`; never logged).
    pub secret_key: Option<Secret>,
    /// Read the SecretKey from this file instead (trailing newline ignored).
    pub secret_key_file: Option<PathBuf>,
    /// A temporary credential's session token (sent as `X-TC-Token`).
    pub token: Option<Secret>,
    /// Read the session token from this file instead.
    pub token_file: Option<PathBuf>,
    /// The API's URL. Default "https://scf.tencentcloudapi.com" (the nearest access point);
    /// "https://scf.ap-guangzhou.tencentcloudapi.com" picks a region's, and a private or test
    /// endpoint such as "http://127.0.0.1:8080" works too. The signed host is its host[:port].
    pub endpoint: Option<String>,
    /// How long one invocation may take: above the function's own timeout for `sync`
    /// routes. Default "60s".
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// PEM file with the certificate authorities to trust for an `https://` endpoint.
    /// Default: the system's roots.
    pub ca_file: Option<PathBuf>,
}

/// The keys of a `[[routes]]` entry whose connection is an SCF one.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ScfSinkConfig {
    /// The function's name.
    pub function: String,
    /// The function's namespace. Default "default".
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The version or alias to invoke. Default "$LATEST".
    #[serde(default = "default_qualifier")]
    pub qualifier: String,
    /// "sync" (`RequestResponse`: the function's result decides, up to 6 MB per request) or
    /// "async" (`Event`: SCF queues the event and answers at once, up to 128 KB per
    /// request). Default "sync".
    #[serde(default)]
    pub invocation: Invocation,
    /// Put every payload in base64 (`payload_encoding` says so). Default false: the text
    /// itself when it is valid UTF-8, base64 otherwise.
    #[serde(default)]
    pub base64_payload: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Invocation {
    #[default]
    Sync,
    Async,
}

impl Invocation {
    /// The API's `InvocationType`.
    pub fn api_name(self) -> &'static str {
        match self {
            Invocation::Sync => "RequestResponse",
            Invocation::Async => "Event",
        }
    }

    /// The largest request SCF takes for this invocation, in bytes: 6 MB and 128 KB, read
    /// as decimal units so that the bridge stays within either reading.
    pub fn request_limit(self) -> usize {
        match self {
            Invocation::Sync => 6_000_000,
            Invocation::Async => 128_000,
        }
    }
}

pub const DEFAULT_ENDPOINT: &str = "https://scf.tencentcloudapi.com";

fn default_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_namespace() -> String {
    "default".into()
}
fn default_qualifier() -> String {
    "$LATEST".into()
}
