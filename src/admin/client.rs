//! The CLI's side of the admin API (`mqbridge status`, `pause`, `resume`, `reload`): requests
//! to a running bridge's listener, and the routes and downlinks tables for a terminal.

use std::fmt::Write;
use std::time::Duration;

use serde_json::Value;

use crate::settings::Secret;

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<Secret>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the bridge at {0}: {1} (is it running, with [admin] listen set?)")]
    Unreachable(String, String),
    #[error("{0}")]
    Refused(String),
    #[error("an unexpected answer from {0}: {1}")]
    Answer(String, String),
}

impl Client {
    /// A client of the bridge listening at `base` (`http://127.0.0.1:9464`).
    pub fn new(base: &str, token: Option<Secret>) -> Result<Self, ClientError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| ClientError::Unreachable(base.into(), e.to_string()))?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    pub async fn routes(&self) -> Result<Value, ClientError> {
        self.send(self.http.get(format!("{}/routes", self.base)))
            .await
    }

    pub async fn set_paused(&self, route: &str, paused: bool) -> Result<Value, ClientError> {
        let verb = if paused { "pause" } else { "resume" };
        let url = format!("{}/routes/{route}/{verb}", self.base);
        self.send(self.authorized(self.http.post(url))).await
    }

    pub async fn reload(&self) -> Result<Value, ClientError> {
        let url = format!("{}/reload", self.base);
        self.send(self.authorized(self.http.post(url))).await
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token.expose()),
            None => request,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::Unreachable(self.base.clone(), e.to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Answer(self.base.clone(), e.to_string()))?;
        let body: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Answer(self.base.clone(), e.to_string()))?;
        match status.is_success() {
            true => Ok(body),
            false => Err(ClientError::Refused(
                body["error"]
                    .as_str()
                    .map_or_else(|| body.to_string(), str::to_owned),
            )),
        }
    }
}

/// The routes and downlinks of `/routes` as tables for a terminal, in one shape.
pub fn routes_table(overview: &Value) -> String {
    let mut out = columns(&rows(&overview["routes"], "ROUTE"));
    let downlinks = rows(&overview["downlinks"], "DOWNLINK");
    if downlinks.len() > 1 {
        out.push('\n');
        out.push_str(&columns(&downlinks));
    }
    if overview["last_reload"]["ok"] == false {
        let _ = writeln!(
            out,
            "\nlast reload refused: {}",
            text(&overview["last_reload"]["detail"])
        );
    }
    out
}

/// A table of `list`: a header (its first column `name`) and a row per route.
fn rows(list: &Value, name: &str) -> Vec<[String; 14]> {
    let mut rows = vec![[
        name,
        "STATE",
        "SOURCE",
        "SINK",
        "CONSUMERS",
        "RECEIVED",
        "DELIVERED",
        "FILTERED",
        "DEAD",
        "RETRIED",
        "IN FLIGHT",
        "BUFFERED",
        "DELAY",
        "LAST ERROR",
    ]
    .map(String::from)];
    for r in list.as_array().into_iter().flatten() {
        let consumers = r["consumers"].as_array().map_or(0, Vec::len);
        let connected = r["consumers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["connected"] == true)
            .count();
        rows.push([
            text(&r["name"]),
            state(r),
            end(&r["source"]),
            end(&r["sink"]),
            format!("{connected}/{consumers}"),
            text(&r["received"]),
            text(&r["delivered"]),
            text(&r["filtered"]),
            text(&r["dead_lettered"]),
            text(&r["retried"]),
            text(&r["in_flight"]),
            buffered(&r["buffer"]),
            format!("{:.1}s", r["delay_seconds"].as_f64().unwrap_or(0.0)),
            last_error(r),
        ]);
    }
    rows
}

/// A route's source or sink in a few words: its kind, its connection, and what it reads or
/// writes there (filters, a topic, a function, ...).
fn end(e: &Value) -> String {
    let what = ["filters", "topic", "mqtt_topic", "function"]
        .iter()
        .map(|k| &e[*k])
        .find(|v| !v.is_null());
    let what = match what {
        Some(Value::Array(items)) => items.iter().map(text).collect::<Vec<_>>().join(","),
        Some(v) => text(v),
        None => String::new(),
    };
    format!("{} {} {what}", text(&e["kind"]), text(&e["connection"]))
        .trim_end()
        .to_owned()
}

/// What a route's disk buffer holds, of its size, and the age of its oldest message; "-"
/// without one.
fn buffered(b: &Value) -> String {
    if b.is_null() {
        return "-".into();
    }
    let size = |v: &Value| crate::buffer::ByteSize(v.as_u64().unwrap_or(0)).approx();
    format!(
        "{} ({} of {}, oldest {:.0}s)",
        text(&b["messages"]),
        size(&b["bytes"]),
        size(&b["max_size"]),
        b["oldest_age_seconds"].as_f64().unwrap_or(0.0)
    )
}

/// A route's or downlink's state, with its reason.
fn state(r: &Value) -> String {
    match r["reason"].as_str() {
        Some(reason) if r["state"] != "stopped" => format!("{} ({reason})", text(&r["state"])),
        _ => text(&r["state"]),
    }
}

/// The last error, cut to 60 characters.
fn last_error(r: &Value) -> String {
    let error = r["last_error"]["message"].as_str().unwrap_or("-");
    match error.chars().count() > 60 {
        true => error.chars().take(57).collect::<String>() + "...",
        false => error.to_owned(),
    }
}

/// Rows as left-aligned columns.
fn columns<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}
