//! The HTTP kind's entry point (`impl Connector for Http`): checks of its settings, the client
//! (reqwest on rustls with the ring provider) and a route's sink.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::config::{HttpConnectionConfig, HttpSinkConfig};
use super::sink::{Client, HttpSink};
use crate::connectors::{Connector, NoSource, SinkContext};
use crate::flow::{BoxError, Sink};
use crate::settings::resolve_relative;
use crate::settings::{Check, Secret};
use crate::template::Vocabulary;

pub struct Http;

impl Connector for Http {
    const NAME: &'static str = "http";
    /// Like the managed function triggers: invocations in parallel, unless a route asks for
    /// per-topic order.
    const ORDERED_BY_DEFAULT: bool = false;
    type ConnectionConfig = HttpConnectionConfig;
    type SinkConfig = HttpSinkConfig;
    type SourceConfig = NoSource;
    type Connection = Arc<Client>;

    fn resolve_paths(c: &mut HttpConnectionConfig, base: &Path) {
        let paths = [
            &mut c.bearer_token_file,
            &mut c.signature_secret_file,
            &mut c.ca_file,
        ];
        resolve_relative(base, paths);
    }

    fn files_read(c: &HttpConnectionConfig) -> Vec<PathBuf> {
        [&c.bearer_token_file, &c.signature_secret_file, &c.ca_file]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    fn check_connection(c: &HttpConnectionConfig, check: &mut Check<'_>) {
        match url::Url::parse(&c.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            Ok(u) => check.field(
                "url",
                format!("\"{}\" is not an http:// or https:// URL", u),
            ),
            Err(e) => check.field("url", format!("\"{}\" is not a URL: {e}", c.url)),
        }
        for (name, value) in &c.headers {
            if HeaderName::try_from(name.as_str()).is_err() {
                check.field(&format!("headers.{name}"), "not a valid header name");
            } else if HeaderValue::try_from(value.expose()).is_err() {
                check.field(&format!("headers.{name}"), "not a valid header value");
            }
        }
        if HeaderName::try_from(c.signature_header.as_str()).is_err() {
            check.field("signature_header", "not a valid header name");
        }
        Secret::check_inline_or_file(check, "bearer_token", &c.bearer_token, &c.bearer_token_file);
        Secret::check_inline_or_file(
            check,
            "signature_secret",
            &c.signature_secret,
            &c.signature_secret_file,
        );
        let secrets = [
            ("bearer_token", &c.bearer_token),
            ("signature_secret", &c.signature_secret),
        ];
        for (key, value) in secrets {
            let Some(v) = value.as_ref().map(Secret::expose) else {
                continue;
            };
            if v.is_empty() {
                check.field(key, "empty");
            } else if key == "bearer_token" && HeaderValue::try_from(v).is_err() {
                check.field(key, "not valid in a header (the value is not shown)");
            }
        }
        if let Some(path) = c.ca_file.as_ref().filter(|p| !p.is_file()) {
            check.field("ca_file", format!("{} is not a file", path.display()));
        }
        if c.timeout < Duration::from_millis(100) {
            check.field("timeout", "must be at least 100ms");
        }
        if c.max_request_bytes < 1024 {
            check.field("max_request_bytes", "must be at least 1024");
        }
    }

    fn check_sink(_: &HttpSinkConfig, _: Vocabulary, _: &mut Check<'_>) {}

    async fn connect(_name: &str, c: &HttpConnectionConfig) -> Result<Arc<Client>, BoxError> {
        let tls = crate::tls::client_config(c.ca_file.as_deref(), None)?;
        let mut headers = HeaderMap::new();
        for (name, value) in &c.headers {
            let mut value = HeaderValue::try_from(value.expose())?;
            value.set_sensitive(true);
            headers.insert(HeaderName::try_from(name.as_str())?, value);
        }
        if let Some(token) = Secret::inline_or_file(&c.bearer_token, &c.bearer_token_file)? {
            let mut value = HeaderValue::try_from(format!("Bearer {}", token.expose()))
                .map_err(|_| "bearer_token: not valid in a header (the value is not shown)")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .default_headers(headers)
            .timeout(c.timeout)
            // A redirected POST turns into a GET without the event (and would carry the
            // headers elsewhere): a redirect is an answer, not a way.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Arc::new(Client {
            http,
            url: c.url.parse()?,
            signature: Secret::inline_or_file(&c.signature_secret, &c.signature_secret_file)?
                .map(|key| (HeaderName::try_from(c.signature_header.as_str()), key))
                .map(|(name, key)| name.map(|n| (n, key)))
                .transpose()?,
            max_request_bytes: c.max_request_bytes,
        }))
    }

    fn sink(
        client: &Arc<Client>,
        context: &SinkContext<'_>,
        route: &HttpSinkConfig,
    ) -> Result<Arc<dyn Sink>, BoxError> {
        Ok(Arc::new(HttpSink::new(
            client.clone(),
            context.name,
            route.base64_payload,
        )))
    }

    async fn health_check(client: &Arc<Client>) -> Result<String, BoxError> {
        client.reachable().await
    }
}
