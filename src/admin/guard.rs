//! What the admin API lets through, before any route runs:
//!
//! - **Host**: a request must name the listener by an IP address, `localhost`, or a name the
//!   operator lists in `[admin] allowed_hosts`. A web page that rebinds its own domain name to
//!   127.0.0.1 (DNS rebinding) reaches the listener under that foreign name and is refused, so
//!   it can read neither `/routes` nor `/metrics`. A request without `Host` (HTTP/1.0 tools) is
//!   let through: browsers always send one.
//! - **Cross-site**: a request that changes something (any method but GET and HEAD) coming
//!   from a page of another origin is refused: `Sec-Fetch-Site` other than `same-origin` or
//!   `none`, or an `Origin` that is not the listener itself. Browsers send these on a
//!   cross-site form POST, which needs no CORS preflight and would otherwise pause a route;
//!   `curl`, the CLI and Prometheus send neither, and the status page sends its own origin.
//! - **Token**: with `[admin] token` set, a request that changes something must carry it
//!   (`Authorization: Bearer`), compared in constant time.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::config::AdminConfig;

use crate::events;
use crate::settings::Secret;

/// What the admin API checks requests against; replaced on reload.
#[derive(Debug, Default, Clone)]
pub struct Access {
    pub token: Option<Secret>,
    /// Host names (lower case, without port) accepted beside IP addresses and `localhost`.
    pub allowed_hosts: Vec<String>,
}

impl Access {
    /// What `[admin]` asks for; an error when the token file cannot be read.
    pub fn of(admin: &AdminConfig) -> Result<Self, String> {
        Ok(Access {
            token: Secret::inline_or_file(&admin.token, &admin.token_file)?,
            allowed_hosts: admin.allowed_hosts.clone(),
        })
    }
}

pub type SharedAccess = Arc<RwLock<Access>>;

/// Refuses requests under a foreign host name, and cross-site requests that change something.
pub async fn guard(State(access): State<SharedAccess>, request: Request, next: Next) -> Response {
    let refusal = {
        let access = access.read().unwrap_or_else(|p| p.into_inner());
        check(&access, request.method(), request.headers())
    };
    match refusal {
        Ok(()) => next.run(request).await,
        Err((reason, message)) => {
            events::AdminRefused {
                reason,
                method: request.method().as_str(),
                path: request.uri().path(),
            }
            .emit();
            let body = serde_json::json!({ "error": message });
            (StatusCode::FORBIDDEN, Json(body)).into_response()
        }
    }
}

/// `Err` names the reason (a metric label) and says what to do.
fn check(
    access: &Access,
    method: &Method,
    headers: &HeaderMap,
) -> Result<(), (&'static str, String)> {
    let host = text(headers, header::HOST);
    if let Some(host) = host {
        if !host_allowed(host, &access.allowed_hosts) {
            return Err((
                "host",
                format!(
                    "requests for host \"{host}\" are refused: use an IP address or localhost, \
                     or list the name in [admin] allowed_hosts"
                ),
            ));
        }
    }
    if matches!(*method, Method::GET | Method::HEAD) {
        return Ok(());
    }
    let cross_site = "a page of another site may not change the bridge";
    if let Some(site) = text(headers, "sec-fetch-site") {
        if !matches!(site, "same-origin" | "none") {
            return Err((
                "cross_site",
                format!("{cross_site} (Sec-Fetch-Site: {site})"),
            ));
        }
    }
    if let Some(origin) = text(headers, header::ORIGIN) {
        if !same_origin(origin, host) {
            return Err(("cross_site", format!("{cross_site} (Origin: {origin})")));
        }
    }
    Ok(())
}

fn text(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"))
}

/// `host` (a `Host` header: name or address, maybe with a port) names the listener by an IP
/// address, `localhost` or an allowed name.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = host_name(host);
    if name.starts_with('[') || name.parse::<IpAddr>().is_ok() {
        return true;
    }
    name.eq_ignore_ascii_case("localhost") || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// The host part of a `Host` header, without its port (an IPv6 address keeps its brackets).
fn host_name(host: &str) -> &str {
    match host.rfind(':') {
        Some(colon) if !host[colon..].contains(']') => &host[..colon],
        _ => host,
    }
}

/// Whether `origin` (`scheme://host[:port]`, or `null`) is the listener the request reached
/// under `host`.
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    let Ok(url) = url::Url::parse(origin) else {
        return false;
    };
    let authority = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => return false,
    };
    matches!(url.scheme(), "http" | "https") && authority.eq_ignore_ascii_case(host)
}

/// Lets a request that changes something through when no token is set or it carries the
/// token.
pub fn authorize(access: &SharedAccess, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let token = access
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .token
        .clone();
    let Some(token) = token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    match same(given.as_bytes(), token.expose().as_bytes()) {
        true => Ok(()),
        false => {
            let body = serde_json::json!({
                "error": "this needs the admin token: Authorization: Bearer <token>"
            });
            let mut response = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("valid"));
            Err(Box::new(response))
        }
    }
}

/// Compares in a time that does not depend on where the two differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, value.parse().unwrap());
        }
        h
    }

    fn verdict(method: Method, pairs: &[(&'static str, &str)]) -> Result<(), &'static str> {
        let access = Access {
            token: None,
            allowed_hosts: vec!["bridge.plant.internal".into()],
        };
        check(&access, &method, &headers(pairs)).map_err(|(reason, _)| reason)
    }

    #[test]
    fn hosts_by_address_localhost_or_allowed_name() {
        for host in [
            "127.0.0.1:9464",
            "127.0.0.1",
            "[::1]:9464",
            "[::1]",
            "10.0.0.7:80",
            "localhost:9464",
            "LOCALHOST",
            "bridge.plant.internal:9464",
            "Bridge.Plant.Internal",
        ] {
            assert_eq!(verdict(Method::GET, &[("host", host)]), Ok(()), "{host}");
        }
        for host in [
            "evil.example:9464",
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
        ] {
            assert_eq!(
                verdict(Method::GET, &[("host", host)]),
                Err("host"),
                "{host}"
            );
            assert_eq!(
                verdict(Method::POST, &[("host", host)]),
                Err("host"),
                "{host}"
            );
        }
        assert_eq!(verdict(Method::GET, &[]), Ok(()), "no Host: not a browser");
    }

    #[test]
    fn changes_from_another_origin_are_refused() {
        let host = ("host", "127.0.0.1:9464");
        assert_eq!(verdict(Method::POST, &[host]), Ok(()), "curl");
        let page = [
            host,
            ("origin", "http://127.0.0.1:9464"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert_eq!(verdict(Method::POST, &page), Ok(()), "the status page");
        for (name, value) in [
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-site", "same-site"),
            ("origin", "http://evil.example"),
            ("origin", "http://127.0.0.1:8000"),
            ("origin", "null"),
        ] {
            assert_eq!(
                verdict(Method::POST, &[host, (name, value)]),
                Err("cross_site"),
                "{name}: {value}"
            );
        }
        let read = [
            host,
            ("origin", "http://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ];
        assert_eq!(
            verdict(Method::GET, &read),
            Ok(()),
            "reading: the browser keeps the answer"
        );
    }
}
