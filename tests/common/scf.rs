//! A stand-in for Tencent Cloud's SCF API on loopback: it checks each request's TC3-HMAC-SHA256
//! signature by recomputing it from what it received (and answers `AuthFailure` on a mismatch),
//! answers `ListFunctions`, and runs `Invoke` through the test's behaviour, recording each
//! invocation's parameters and event. The signature check is written here from Tencent's
//! algorithm, apart from the bridge's code.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// One `Invoke` the API took (signature valid).
#[derive(Clone, Debug)]
pub struct Invocation {
    pub headers: HeaderMap,
    pub body_len: usize,
    pub request: serde_json::Value,
    pub event: serde_json::Value,
}

impl Invocation {
    pub fn payloads(&self) -> Vec<String> {
        self.event["Records"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|r| r["Mqtt"]["payload"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// How an invocation ends.
pub enum Outcome {
    /// `InvokeResult` (0: the function succeeded).
    Result(i64),
    /// An API error code.
    Error(&'static str),
}

type Behaviour = Arc<dyn Fn(&Invocation) -> Outcome + Send + Sync>;

#[derive(Clone)]
struct Shared {
    secret_id: String,
    secret_key: String,
    behaviour: Behaviour,
    invocations: Arc<Mutex<Vec<(Invocation, bool)>>>,
    refused: Arc<Mutex<Vec<String>>>,
}

pub struct ScfApi {
    pub port: u16,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl ScfApi {
    pub async fn start(
        secret_id: &str,
        secret_key: &str,
        behaviour: impl Fn(&Invocation) -> Outcome + Send + Sync + 'static,
    ) -> Self {
        let shared = Shared {
            secret_id: secret_id.into(),
            secret_key: secret_key.into(),
            behaviour: Arc::new(behaviour),
            invocations: Arc::default(),
            refused: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(axum::routing::post(handle))
            .layer(axum::extract::DefaultBodyLimit::max(16 * 1024 * 1024))
            .with_state(shared.clone());
        let port = super::free_port();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        ScfApi { port, shared, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Invocations, and whether each succeeded.
    pub fn invocations(&self) -> Vec<(Invocation, bool)> {
        self.shared.invocations.lock().unwrap().clone()
    }

    /// Requests refused, with the reason.
    pub fn refused(&self) -> Vec<String> {
        self.shared.refused.lock().unwrap().clone()
    }

    /// How many times each payload was in a successful invocation.
    pub fn delivered(&self) -> std::collections::HashMap<String, usize> {
        let mut counts = std::collections::HashMap::new();
        for (inv, ok) in self.invocations() {
            if ok {
                for p in inv.payloads() {
                    *counts.entry(p).or_insert(0) += 1;
                }
            }
        }
        counts
    }
}

impl Drop for ScfApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(body: serde_json::Value) -> axum::Json<serde_json::Value> {
    let mut body = body;
    body["RequestId"] = uuid::Uuid::now_v7().to_string().into();
    axum::Json(serde_json::json!({ "Response": body }))
}

fn error(code: &str, message: &str) -> axum::Json<serde_json::Value> {
    answer(serde_json::json!({"Error": {"Code": code, "Message": message}}))
}

async fn handle(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::Json<serde_json::Value> {
    if let Err(reason) = verify(&s, &headers, &body) {
        s.refused.lock().unwrap().push(reason.clone());
        return error("AuthFailure.SignatureFailure", &reason);
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    if header("x-tc-version") != "2018-04-16" || header("x-tc-region").is_empty() {
        return error("InvalidParameter", "version or region");
    }
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    match header("x-tc-action") {
        "ListFunctions" => answer(serde_json::json!({"Functions": [], "TotalCount": 0})),
        "Invoke" => {
            let limit = match request["InvocationType"].as_str() {
                Some("Event") => 128_000,
                _ => 6_000_000,
            };
            if body.len() > limit {
                return error("RequestSizeLimitExceeded", "request too large");
            }
            let context = request["ClientContext"].as_str().unwrap_or_default();
            let invocation = Invocation {
                headers: headers.clone(),
                body_len: body.len(),
                event: serde_json::from_str(context).unwrap_or_default(),
                request: request.clone(),
            };
            let asynchronous = request["InvocationType"] == "Event";
            let outcome = (s.behaviour)(&invocation);
            let ok = matches!(outcome, Outcome::Result(0));
            s.invocations.lock().unwrap().push((invocation, ok));
            match outcome {
                Outcome::Error(code) => error(code, "as the test asked"),
                // As SCF answers an async invocation: queued, the function's fields null.
                Outcome::Result(0) if asynchronous => answer(serde_json::json!({"Result": {
                    "InvokeResult": null, "ErrMsg": null, "RetMsg": null, "Log": null,
                    "FunctionRequestId": uuid::Uuid::now_v7().to_string(),
                    "Duration": null, "BillDuration": null, "MemUsage": null
                }})),
                Outcome::Result(n) => answer(serde_json::json!({"Result": {
                    "InvokeResult": n,
                    "ErrMsg": if n == 0 { "" } else { "handler threw" },
                    "RetMsg": "",
                    "FunctionRequestId": uuid::Uuid::now_v7().to_string(),
                    "Duration": 1.0, "BillDuration": 1, "MemUsage": 1, "Log": ""
                }})),
            }
        }
        other => error("InvalidAction", other),
    }
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Recomputes the request's signature from the headers it names and the body it carries.
fn verify(s: &Shared, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or(format!("no {name} header"))
    };
    let authorization = get("authorization")?;
    let rest = authorization
        .strip_prefix("TC3-HMAC-SHA256 Credential=")
        .ok_or("not TC3-HMAC-SHA256")?;
    let (credential, rest) = rest
        .split_once(", SignedHeaders=")
        .ok_or("no SignedHeaders")?;
    let (signed, signature) = rest.split_once(", Signature=").ok_or("no Signature")?;
    let mut scope = credential.splitn(4, '/');
    let (id, date, service, tail) = (
        scope.next().unwrap_or_default(),
        scope.next().unwrap_or_default(),
        scope.next().unwrap_or_default(),
        scope.next().unwrap_or_default(),
    );
    if id != s.secret_id || service != "scf" || tail != "tc3_request" {
        return Err(format!("credential {credential}"));
    }
    let timestamp: u64 = get("x-tc-timestamp")?
        .parse()
        .map_err(|_| "bad timestamp")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now.abs_diff(timestamp) > Duration::from_secs(300).as_secs() {
        return Err("timestamp too far from now".into());
    }
    let days = timestamp / 86_400;
    let expected_date = {
        // Days to a civil date, by counting (the test's own way, not the bridge's).
        let (mut y, mut d) = (1970u64, days);
        let leap =
            |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        while d >= if leap(y) { 366 } else { 365 } {
            d -= if leap(y) { 366 } else { 365 };
            y += 1;
        }
        let months = [
            31,
            if leap(y) { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        let mut m = 0;
        while d >= months[m] {
            d -= months[m];
            m += 1;
        }
        format!("{y:04}-{:02}-{:02}", m + 1, d + 1)
    };
    if date != expected_date {
        return Err(format!("date {date}, expected {expected_date}"));
    }
    for required in ["content-type", "host"] {
        if !signed.split(';').any(|h| h == required) {
            return Err(format!("{required} not signed"));
        }
    }
    let mut canonical_headers = String::new();
    for name in signed.split(';') {
        canonical_headers += &format!("{name}:{}\n", get(name)?.trim().to_lowercase());
    }
    let canonical = format!(
        "POST\n/\n\n{canonical_headers}\n{signed}\n{}",
        hex::encode(Sha256::digest(body))
    );
    let to_sign = format!(
        "TC3-HMAC-SHA256\n{timestamp}\n{date}/scf/tc3_request\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = hmac(format!("TC3{}", s.secret_key).as_bytes(), date);
    let key = hmac(&hmac(&key, "scf"), "tc3_request");
    let expected = hex::encode(hmac(&key, &to_sign));
    match expected == signature {
        true => Ok(()),
        false => Err("signature mismatch".into()),
    }
}
