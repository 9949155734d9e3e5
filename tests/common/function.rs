//! A function to trigger: a local HTTP server (axum) that records every request it receives
//! (headers, body, the event, when it came and when it was answered) and answers as the test's
//! behaviour says (status, delay, headers). It counts the requests in progress at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// One request the function received.
#[derive(Clone, Debug)]
pub struct Call {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub event: serde_json::Value,
    pub started: Instant,
    pub finished: Instant,
    /// The status it was answered with.
    pub status: u16,
}

impl Call {
    /// The event's MQTT records (`Records[].Mqtt`).
    pub fn records(&self) -> Vec<&serde_json::Value> {
        self.records_of("Mqtt")
    }

    /// The event's Kafka records (`Records[].Ckafka`).
    pub fn kafka_records(&self) -> Vec<&serde_json::Value> {
        self.records_of("Ckafka")
    }

    fn records_of(&self, system: &str) -> Vec<&serde_json::Value> {
        self.event["Records"]
            .as_array()
            .map(|r| r.iter().filter_map(|r| r.get(system)).collect())
            .unwrap_or_default()
    }

    pub fn payloads(&self) -> Vec<String> {
        self.records()
            .iter()
            .map(|r| r["payload"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// How the function answers a request.
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn ok() -> Self {
        Reply::status(200)
    }
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

pub type Behaviour = Arc<dyn Fn(&Call) -> Reply + Send + Sync>;

#[derive(Clone)]
struct Shared {
    behaviour: Behaviour,
    calls: Arc<Mutex<Vec<Call>>>,
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

pub struct FunctionServer {
    pub port: u16,
    calls: Arc<Mutex<Vec<Call>>>,
    most: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FunctionServer {
    pub async fn start(behaviour: impl Fn(&Call) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_on(super::free_port(), behaviour).await
    }

    pub async fn start_on(
        port: u16,
        behaviour: impl Fn(&Call) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let shared = Shared {
            behaviour: Arc::new(behaviour),
            calls: Arc::default(),
            now: Arc::default(),
            most: Arc::default(),
        };
        let (calls, most) = (shared.calls.clone(), shared.most.clone());
        let app = axum::Router::new()
            .fallback(axum::routing::post(handle))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FunctionServer {
            port,
            calls,
            most,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/invoke", self.port)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The most requests that were in progress at once.
    pub fn most_at_once(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }

    /// How many times each payload was in a request answered 2xx.
    pub fn delivered(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for call in self.calls().iter().filter(|c| c.status / 100 == 2) {
            for p in call.payloads() {
                *counts.entry(p).or_insert(0) += 1;
            }
        }
        counts
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

async fn handle(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    // Counted out when answered or abandoned by the client.
    struct InProgress(Arc<AtomicUsize>);
    impl Drop for InProgress {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let now = s.now.fetch_add(1, Ordering::SeqCst) + 1;
    let _in_progress = InProgress(s.now.clone());
    s.most.fetch_max(now, Ordering::SeqCst);
    let event = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let mut call = Call {
        headers,
        body,
        event,
        started: Instant::now(),
        finished: Instant::now(),
        status: 0,
    };
    let reply = (s.behaviour)(&call);
    tokio::time::sleep(reply.delay).await;
    call.finished = Instant::now();
    call.status = reply.status;
    s.calls.lock().unwrap().push(call);
    let mut response = StatusCode::from_u16(reply.status).unwrap().into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// How many times each payload appears in the dead-letter file at `path`, and the entries.
pub fn dead_letters(path: &std::path::Path) -> Vec<serde_json::Value> {
    super::json_lines(path)
}

/// Waits up to `limit` until the dead-letter file at `path` holds at least `n` entries, and
/// returns them; fails the test when it never does.
pub async fn await_dead_letters(
    path: &std::path::Path,
    n: usize,
    limit: Duration,
) -> Vec<serde_json::Value> {
    let arrived = super::eventually(limit, || dead_letters(path).len() >= n).await;
    let entries = dead_letters(path);
    assert!(
        arrived,
        "{} of {n} dead letters within {limit:?}: {entries:?}",
        entries.len()
    );
    entries
}

/// The payloads of dead-letter entries.
pub fn dead_payloads(entries: &[serde_json::Value]) -> std::collections::HashSet<&str> {
    entries
        .iter()
        .map(|e| e["message"]["payload"].as_str().unwrap())
        .collect()
}
