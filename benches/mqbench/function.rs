//! The `function` role: a no-op function for the bridge's `http` connection, in its own process
//! so that its CPU time is not the bridge's. An HTTP server (axum) on 127.0.0.1 that takes
//! POSTs of the function event (`{"Records":[{"Mqtt":{..., "payload": ...}}]}`), counts every
//! record's payload into a [`Tally`] and answers 200, `--delay-ms` after the request's head came
//! when given (a function that takes that long). It times each call from its head's arrival to
//! the answer, and each connection's idle time between calls (see [`Calls`]). Prints
//! `listening` once bound, then one JSON [`FunctionReport`] line when all messages arrived or
//! the stream stalled, and goes on answering until it is killed.
//!
//! [`HttpRun`] names the bridge runs against it: the route's batch size and order, the
//! function's delay.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::payload;
use crate::tally::{StallClock, Summary, Tally};

/// The function routes' `concurrency` (the bridge's default), written out so that the report
/// can say what a slow function allows: `concurrency` calls at once.
pub const CONCURRENCY: usize = 4;

/// The batched routes' `max_wait`. With the default, 0, a batch goes out with whatever has
/// arrived as soon as one of the `concurrency` slots is free: to a no-op function the slots free
/// up so fast that batches held 10 to 20 messages whatever the batch size. 20 ms lets batches
/// fill: at the 50–100k msg/s this machine delivers, 1,000 messages arrive in 10–20 ms, and the
/// timer matters only for the run's last batch.
pub const MAX_WAIT: &str = "20ms";

/// A bridge run with an `http` connection to this function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpRun {
    Batch1,
    Batch100,
    Batch1000,
    /// `ordered = true`, batch 100, over 1,000 topics.
    Ordered,
    /// Batch 1 to a function that takes 20 ms.
    Slow,
}

/// How an [`HttpRun`] is set up.
#[derive(Debug, Clone, Copy)]
pub struct HttpSetup {
    pub batch_size: usize,
    pub ordered: bool,
    /// Topics the publisher spreads messages over, when not the load's.
    pub topics: Option<usize>,
    /// How long the function takes per call.
    pub delay_ms: u64,
    /// The most messages a run carries, when the function is slow.
    pub max_count: Option<u64>,
}

impl HttpRun {
    pub const NAMES: &'static str = "http1, http100, http1000, http-ordered, http-20ms";

    pub fn parse(s: &str) -> Option<HttpRun> {
        Some(match s {
            "http1" => HttpRun::Batch1,
            "http100" => HttpRun::Batch100,
            "http1000" => HttpRun::Batch1000,
            "http-ordered" => HttpRun::Ordered,
            "http-20ms" => HttpRun::Slow,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            HttpRun::Batch1 => "mqbridge → http (batch 1)",
            HttpRun::Batch100 => "mqbridge → http (batch 100)",
            HttpRun::Batch1000 => "mqbridge → http (batch 1000)",
            HttpRun::Ordered => "mqbridge → http (batch 100, ordered)",
            HttpRun::Slow => "mqbridge → http (batch 1, 20 ms function)",
        }
    }

    pub fn setup(self) -> HttpSetup {
        let batch = |batch_size| HttpSetup {
            batch_size,
            ordered: false,
            topics: None,
            delay_ms: 0,
            max_count: None,
        };
        match self {
            HttpRun::Batch1 => batch(1),
            HttpRun::Batch100 => batch(100),
            HttpRun::Batch1000 => batch(1000),
            HttpRun::Ordered => HttpSetup {
                ordered: true,
                topics: Some(1000),
                ..batch(100)
            },
            // 4 calls at once of 20 ms: about 200 messages a second, 15 s for 3,000.
            HttpRun::Slow => HttpSetup {
                delay_ms: 20,
                max_count: Some(3000),
                ..batch(1)
            },
        }
    }

    /// The route's keys.
    pub fn route_keys(self) -> String {
        let s = self.setup();
        format!(
            "batch_size = {}\nordered = {}\nmax_wait = \"{MAX_WAIT}\"\nconcurrency = {CONCURRENCY}\n",
            s.batch_size, s.ordered
        )
    }
}

/// The largest request taken: a batch of 1,000 records of 16 KiB is about 16 MiB.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

#[derive(clap::Args, Debug, Clone)]
pub struct FunctionArgs {
    #[arg(long)]
    pub port: u16,
    #[arg(long)]
    pub count: u64,
    /// How long each call takes before it is answered.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Gives up after this long without a new message.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub stall: Duration,
}

/// What the function prints: the messages it saw, and its calls.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionReport {
    pub summary: Summary,
    pub calls: Calls,
}

/// The calls the function took: how long it spent on each (head received to answer), and how
/// long each connection stayed idle between an answer and its next call. The bridge keeps at
/// most `concurrency` calls out, each on a connection of its own, so with messages waiting that
/// idle time is what the bridge adds per call: the answer read, the messages acknowledged, the
/// next batch formed and sent, plus loopback and this server's HTTP layer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Calls {
    pub count: u64,
    pub p50_us: u32,
    pub p99_us: u32,
    pub idle_p50_us: u32,
    pub idle_p99_us: u32,
}

/// One call, as the function saw it.
struct Call {
    peer: SocketAddr,
    started: Instant,
    answered: Instant,
}

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "Records", borrow)]
    records: Vec<Entry<'a>>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(rename = "Mqtt", borrow)]
    mqtt: Record<'a>,
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    payload: Cow<'a, str>,
    #[serde(borrow)]
    payload_encoding: Cow<'a, str>,
}

struct Shared {
    tally: Mutex<Tally>,
    calls: Mutex<Vec<Call>>,
    /// Calls taken and not yet answered.
    in_progress: AtomicUsize,
    delay: Duration,
}

pub async fn run(a: FunctionArgs) -> anyhow::Result<()> {
    let shared = Arc::new(Shared {
        tally: Mutex::new(Tally::new(a.count, 1)),
        calls: Mutex::new(Vec::with_capacity(a.count as usize)),
        in_progress: AtomicUsize::new(0),
        delay: Duration::from_millis(a.delay_ms),
    });
    let app = axum::Router::new()
        .fallback(axum::routing::post(invoke))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", a.port)).await?;
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("listening");
    let mut clock = StallClock::new(a.stall);
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let t = shared.tally.lock().unwrap();
        if t.complete() || clock.stalled(t.unique()) {
            break;
        }
    }
    let tally = std::mem::replace(&mut *shared.tally.lock().unwrap(), Tally::new(0, 1));
    // The calls that brought the last messages are still being answered: count them too.
    let answered = tokio::time::Instant::now() + shared.delay + Duration::from_secs(1);
    while shared.in_progress.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < answered {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let calls = std::mem::take(&mut *shared.calls.lock().unwrap());
    let report = FunctionReport {
        summary: tally.summary(),
        calls: Calls::of(calls),
    };
    println!("{}", serde_json::to_string(&report)?);
    // Go on answering (what comes now counts nowhere) until the benchmark has stopped the
    // bridge, which must deliver what it holds to exit cleanly, and kills this process.
    std::future::pending::<()>().await;
    Ok(())
}

async fn invoke(
    State(s): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> StatusCode {
    let started = Instant::now();
    s.in_progress.fetch_add(1, Ordering::SeqCst);
    let status = take(&s, request, started).await;
    let call = Call {
        peer,
        started,
        answered: Instant::now(),
    };
    s.calls.lock().unwrap().push(call);
    s.in_progress.fetch_sub(1, Ordering::SeqCst);
    status
}

/// Reads the event, counts its records, and waits out the function's delay from `started`.
async fn take(s: &Shared, request: Request, started: Instant) -> StatusCode {
    let Ok(body) = axum::body::to_bytes(request.into_body(), BODY_LIMIT).await else {
        return StatusCode::BAD_REQUEST;
    };
    let Ok(event) = serde_json::from_slice::<Event>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let arrival = payload::now_ns();
    {
        let mut tally = s.tally.lock().unwrap();
        for Entry { mqtt } in &event.records {
            match mqtt.payload_encoding.as_ref() {
                "base64" => {
                    let raw = base64::engine::general_purpose::STANDARD.decode(&*mqtt.payload);
                    tally.record(&raw.unwrap_or_default(), arrival);
                }
                _ => tally.record(mqtt.payload.as_bytes(), arrival),
            }
        }
    }
    if let Some(left) = s
        .delay
        .checked_sub(started.elapsed())
        .filter(|d| !d.is_zero())
    {
        // tokio's timer rounds up to the next millisecond (20 ms would take about 21); a
        // thread's sleep keeps to the delay within tens of microseconds.
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(left)).await;
    }
    StatusCode::OK
}

impl Calls {
    fn of(mut calls: Vec<Call>) -> Calls {
        let us = |d: Duration| d.as_micros().min(u32::MAX as u128) as u32;
        let took: Vec<u32> = calls.iter().map(|c| us(c.answered - c.started)).collect();
        // A connection carries one call at a time (HTTP/1.1 without pipelining).
        calls.sort_by_key(|c| (c.peer, c.started));
        let idle: Vec<u32> = calls
            .windows(2)
            .filter(|w| w[0].peer == w[1].peer)
            .map(|w| us(w[1].started.saturating_duration_since(w[0].answered)))
            .collect();
        let (took, idle) = (percentiles(took), percentiles(idle));
        Calls {
            count: calls.len() as u64,
            p50_us: took(0.50),
            p99_us: took(0.99),
            idle_p50_us: idle(0.50),
            idle_p99_us: idle(0.99),
        }
    }
}

/// The values' percentile function.
fn percentiles(mut v: Vec<u32>) -> impl Fn(f64) -> u32 {
    v.sort_unstable();
    move |p| match v.len() {
        0 => 0,
        n => v[((n - 1) as f64 * p).round() as usize],
    }
}
