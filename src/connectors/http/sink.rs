//! A route's HTTP sink: the batch as function events (`connectors/function.rs`), each POSTed to the function URL, signed when a secret is set. The status decides what a
//! failure is (README "Function triggers"): 2xx delivered; 408, 429, 5xx and transport errors
//! on the way (retried for as long as it takes, `Retry-After` honoured); 401 and 403 the
//! bridge's settings refused; any other status a failure of the function (attempts, then dead
//! letter).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use sha2::Sha256;

use crate::connectors::function::{invoke_in_turn, quoted, transport_failure, Limit};
use crate::flow::{BoxError, Retry, Sink, SinkError};
use crate::message::Message;
use crate::settings::Secret;

/// An HTTP connection's client, shared by its routes.
pub struct Client {
    pub(super) http: reqwest::Client,
    pub(super) url: Url,
    /// The signature's header and secret.
    pub(super) signature: Option<(HeaderName, Secret)>,
    pub(super) max_request_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("the function answered {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("{0}")]
    Transport(String),
}

impl Client {
    /// The connection check: the function's host takes a TCP connection. Nothing is sent, since
    /// any request might run the function.
    pub async fn reachable(&self) -> Result<String, BoxError> {
        let host = self.url.host_str().unwrap_or_default();
        let port = self.url.port_or_known_default().unwrap_or(80);
        // An IPv6 literal comes in brackets.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let connect = tokio::net::TcpStream::connect((bare, port));
        match tokio::time::timeout(Duration::from_secs(5), connect).await {
            Ok(Ok(_)) => Ok(format!("{host}:{port} accepts connections")),
            Ok(Err(e)) => Err(format!("{host}:{port}: {e}").into()),
            Err(_) => Err(format!("{host}:{port}: no answer in 5s").into()),
        }
    }

    /// POSTs one event.
    async fn post(&self, body: Vec<u8>) -> Result<(), SinkError> {
        let mut request = self
            .http
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json");
        if let Some((header, secret)) = &self.signature {
            request = request.header(header, sign(secret, &body));
        }
        let response = request.body(body).send().await.map_err(transport)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| retry_after(v, SystemTime::now()));
        let body = quoted(response.bytes().await.unwrap_or_default().as_ref());
        let (kind, retry) = classify(status);
        let error = SinkError::new(kind, retry, HttpError::Status { status, body });
        Err(match retry_after {
            Some(delay) => error.with_retry_after(delay),
            None => error,
        })
    }
}

/// What a status means for the messages (README "Function triggers", the HTTP table).
fn classify(status: StatusCode) -> (&'static str, Retry) {
    match status.as_u16() {
        408 => ("timeout", Retry::Retriable),
        429 => ("throttled", Retry::Retriable),
        401 | 403 => ("unauthorized", Retry::Configuration),
        // The URL is not where the function is: the settings must change.
        300..=399 => ("redirected", Retry::Configuration),
        500..=599 => ("unavailable", Retry::Retriable),
        _ => ("function_error", Retry::Attempts),
    }
}

fn transport(e: reqwest::Error) -> SinkError {
    let (kind, text) = transport_failure(e);
    SinkError::new(kind, Retry::Retriable, HttpError::Transport(text))
}

/// `sha256=<hex of HMAC-SHA256(secret, body)>`.
fn sign(secret: &Secret, body: &[u8]) -> HeaderValue {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(body);
    let value = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    HeaderValue::try_from(value).expect("hex is a valid header value")
}

/// A `Retry-After` in seconds or as an HTTP date.
fn retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// A route's sink on an HTTP connection.
pub struct HttpSink {
    client: Arc<Client>,
    route: Arc<str>,
    base64: bool,
}

impl HttpSink {
    pub fn new(client: Arc<Client>, route: &str, base64: bool) -> Self {
        HttpSink {
            client,
            route: route.into(),
            base64,
        }
    }
}

#[async_trait]
impl Sink for HttpSink {
    async fn send(&self, batch: &[&Message]) -> Vec<Result<(), SinkError>> {
        let limit = Limit {
            bytes: self.client.max_request_bytes,
            setting: "max_request_bytes",
            overhead: 0,
            escaped: false,
        };
        invoke_in_turn(&self.route, batch, self.base64, limit, |event| {
            self.client.post(event)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_as_documented() {
        let retry = |code| classify(StatusCode::from_u16(code).unwrap()).1;
        for code in [408, 429, 500, 502, 503, 504] {
            assert_eq!(retry(code), Retry::Retriable, "{code}");
        }
        for code in [401, 403] {
            assert_eq!(retry(code), Retry::Configuration, "{code}");
        }
        for code in [301, 302, 307, 308] {
            assert_eq!(retry(code), Retry::Configuration, "{code}");
        }
        for code in [400, 404, 409, 413, 422] {
            assert_eq!(retry(code), Retry::Attempts, "{code}");
        }
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2026 07:28:00 GMT").unwrap();
        let v = |s: &'static str| retry_after(&HeaderValue::from_static(s), now);
        assert_eq!(v("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            v("Wed, 21 Oct 2026 07:28:30 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(v("Wed, 21 Oct 2026 07:27:00 GMT"), Some(Duration::ZERO));
        assert_eq!(v("soon"), None);
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        let value = sign(&Secret::new("Jefe"), b"what do ya want for nothing?");
        assert_eq!(
            value.to_str().unwrap(),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
