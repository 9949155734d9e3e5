//! The SCF kind's entry point (`impl Connector for Scf`): checks of its settings, the client
//! (reqwest on rustls) and a route's sink.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::config::{ScfConnectionConfig, ScfSinkConfig, DEFAULT_ENDPOINT};
use super::sink::{Client, ScfSink};
use crate::connectors::{Connector, NoSource, SinkContext};
use crate::flow::{BoxError, Sink};
use crate::settings::resolve_relative;
use crate::settings::{Check, Secret};
use crate::template::Vocabulary;

pub struct Scf;

impl Connector for Scf {
    const NAME: &'static str = "scf";
    /// Like the managed trigger: invocations in parallel, unless a route asks for order.
    const ORDERED_BY_DEFAULT: bool = false;
    type ConnectionConfig = ScfConnectionConfig;
    type SinkConfig = ScfSinkConfig;
    type SourceConfig = NoSource;
    type Connection = Arc<Client>;

    fn resolve_paths(c: &mut ScfConnectionConfig, base: &Path) {
        let paths = [
            &mut c.secret_id_file,
            &mut c.secret_key_file,
            &mut c.token_file,
            &mut c.ca_file,
        ];
        resolve_relative(base, paths);
    }

    fn files_read(c: &ScfConnectionConfig) -> Vec<PathBuf> {
        [
            &c.secret_id_file,
            &c.secret_key_file,
            &c.token_file,
            &c.ca_file,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }

    fn check_connection(c: &ScfConnectionConfig, check: &mut Check<'_>) {
        let region_ok = !c.region.is_empty()
            && c.region
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
        if !region_ok {
            check.field(
                "region",
                format!("\"{}\" is not a region such as \"ap-guangzhou\"", c.region),
            );
        }
        let credentials = [
            ("secret_id", &c.secret_id, &c.secret_id_file),
            ("secret_key", &c.secret_key, &c.secret_key_file),
        ];
        for (key, inline, file) in credentials {
            Secret::check_inline_or_file(check, key, inline, file);
            if inline.is_none() && file.is_none() {
                check.field(key, format!("missing: set `{key}` or `{key}_file`"));
            }
        }
        Secret::check_inline_or_file(check, "token", &c.token, &c.token_file);
        // They travel in headers: visible ASCII only, and something.
        let inline = [("secret_id", &c.secret_id), ("token", &c.token)];
        for (key, value) in inline {
            if let Some(v) = value.as_ref().map(Secret::expose) {
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_graphic()) {
                    check.field(
                        key,
                        "empty, or not printable ASCII (the value is not shown)",
                    );
                }
            }
        }
        if c.secret_key.as_ref().is_some_and(|k| k.expose().is_empty()) {
            check.field("secret_key", "empty");
        }
        if let Some(endpoint) = &c.endpoint {
            match url::Url::parse(endpoint) {
                Ok(u) if !matches!(u.path(), "" | "/") || u.query().is_some() => check.field(
                    "endpoint",
                    format!("\"{endpoint}\": the API takes requests at / (no path or query)"),
                ),
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
                _ => check.field(
                    "endpoint",
                    format!("\"{endpoint}\" is not an http:// or https:// URL"),
                ),
            }
        }
        if let Some(path) = c.ca_file.as_ref().filter(|p| !p.is_file()) {
            check.field("ca_file", format!("{} is not a file", path.display()));
        }
        if c.timeout < Duration::from_secs(1) {
            check.field("timeout", "must be at least 1s");
        }
    }

    fn check_sink(r: &ScfSinkConfig, _: Vocabulary, check: &mut Check<'_>) {
        // SCF's rules: letters, digits, '-' and '_', starting with a letter, 2 to 60 long.
        let name_ok = |s: &str, max: usize| {
            (2..=max).contains(&s.len())
                && s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !name_ok(&r.function, 60) {
            check.field(
                "function",
                format!(
                    "\"{}\" is not a function name (2 to 60 letters, digits, '-' and '_', \
                     starting with a letter)",
                    r.function
                ),
            );
        }
        if !name_ok(&r.namespace, 30) {
            check.field(
                "namespace",
                format!("\"{}\" is not a namespace name", r.namespace),
            );
        }
        if r.qualifier.is_empty() {
            check.field("qualifier", "empty: use \"$LATEST\", a version or an alias");
        }
    }

    async fn connect(_name: &str, c: &ScfConnectionConfig) -> Result<Arc<Client>, BoxError> {
        let tls = crate::tls::client_config(c.ca_file.as_deref(), None)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(c.timeout)
            .build()?;
        let required = |inline, file, key| {
            Secret::inline_or_file(inline, file)?.ok_or_else(|| format!("`{key}` is missing"))
        };
        let url: url::Url = c.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT).parse()?;
        Ok(Arc::new(Client::new(
            http,
            url,
            c.region.clone(),
            required(&c.secret_id, &c.secret_id_file, "secret_id")?,
            required(&c.secret_key, &c.secret_key_file, "secret_key")?,
            Secret::inline_or_file(&c.token, &c.token_file)?,
        )))
    }

    fn sink(
        client: &Arc<Client>,
        context: &SinkContext<'_>,
        route: &ScfSinkConfig,
    ) -> Result<Arc<dyn Sink>, BoxError> {
        Ok(Arc::new(ScfSink::new(client.clone(), context.name, route)))
    }

    async fn health_check(client: &Arc<Client>) -> Result<String, BoxError> {
        client.check().await
    }
}
