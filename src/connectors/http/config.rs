//! `type = "http"`: any function URL or webhook (SCF function URLs, AWS Lambda function URLs,
//! OpenFaaS, Knative, a plain web service) that takes the function event (`event.rs`) in a
//! POST. The connection's settings and the keys an HTTP route takes. Every `///` comment on a
//! field is user documentation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::Secret;

/// `[connections.NAME]` with `type = "http"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HttpConnectionConfig {
    /// The function's URL, `http://` or `https://`.
    pub url: String,
    /// Request headers to add (values may take `${ENV}`; never logged).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Sent as `Authorization: Bearer <token>`.
    pub bearer_token: Option<Secret>,
    /// Read the bearer token from this file instead (trailing newline ignored).
    pub bearer_token_file: Option<PathBuf>,
    /// Sign each request body with HMAC-SHA256 under this secret, so that the function can
    /// tell the bridge's requests from others: header `signature_header`, value
    /// `sha256=<hex>`.
    pub signature_secret: Option<Secret>,
    /// Read the signature secret from this file instead.
    pub signature_secret_file: Option<PathBuf>,
    /// The signature's header. Default "X-Mqbridge-Signature".
    #[serde(default = "default_signature_header")]
    pub signature_header: String,
    /// How long one request may take. Default "30s".
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// PEM file with the certificate authorities to trust for `https://`. Default: the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// The largest request body, in bytes: a larger batch is split into several requests, and
    /// a message too large alone is dead-lettered (`too_large`). Default 6291456 (6 MiB).
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
}

/// The keys of a `[[routes]]` entry whose connection is an HTTP one.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct HttpSinkConfig {
    /// Put every payload in base64 (`payload_encoding` says so), for binary payloads. Default
    /// false: the text itself when it is valid UTF-8, base64 otherwise.
    #[serde(default)]
    pub base64_payload: bool,
}

fn default_signature_header() -> String {
    "X-Mqbridge-Signature".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_request_bytes() -> usize {
    6 * 1024 * 1024
}
