//! The pipeline driven end to end with a scripted sink and a recording acker, mostly under
//! paused time: the harness (`Run`, `Fakes`, the scripted sink) here; per-key serialization,
//! acks in receive order per lane, batching by count and time and stops in `order`; dead
//! letters, a sink that breaks its contract and the retry classes in `failures`; `pause`; and
//! a flow reading a partitioned source in `records`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::connectors::file::FileWriter;
use crate::dead_letter::DeadLetter;
use crate::flow::{Acker, Delivery, Pause, RouteStats};
use crate::flow::{Retry, Sink, SinkError};
use crate::message::tests::sample;
use crate::message::Message;

/// What the sink saw: (virtual ms since start, payloads of the call).
type Calls = Arc<Mutex<Vec<(u64, Vec<String>)>>>;

/// A sink whose answer for each message is scripted by `answer(payload, attempt)`; `delay`
/// says how long a call takes, from the first message's topic.
struct Scripted {
    start: Instant,
    calls: Calls,
    attempts: Mutex<std::collections::HashMap<String, u32>>,
    delay: fn(&str) -> Duration,
    answer: fn(&str, u32) -> Option<Result<(), SinkError>>,
}

#[derive(Debug, thiserror::Error)]
#[error("scripted failure")]
struct Failure;

fn fail() -> Option<Result<(), SinkError>> {
    Some(Err(SinkError::new("scripted", Retry::Retriable, Failure)))
}

#[async_trait]
impl Sink for Scripted {
    async fn send(&self, batch: &[&Message]) -> Vec<Result<(), SinkError>> {
        let payloads: Vec<String> = batch.iter().map(|m| text(m)).collect();
        let at = self.start.elapsed().as_millis() as u64;
        self.calls.lock().unwrap().push((at, payloads.clone()));
        tokio::time::sleep((self.delay)(&batch[0].topic)).await;
        let mut out = Vec::new();
        for p in payloads {
            let attempt = {
                let mut attempts = self.attempts.lock().unwrap();
                let n = attempts.entry(p.clone()).or_insert(0);
                *n += 1;
                *n
            };
            if let Some(result) = (self.answer)(&p, attempt) {
                out.push(result);
            }
        }
        out
    }
}

fn text(m: &Message) -> String {
    String::from_utf8_lossy(&m.payload).into_owned()
}

/// Records each ack: (lane, payload, done).
#[derive(Clone, Default)]
struct Recorder {
    lane: usize,
    acks: Arc<Mutex<Vec<(usize, String, bool)>>>,
}

#[async_trait]
impl Acker for Recorder {
    type Token = String;
    async fn ack(&self, released: Vec<(String, bool)>) {
        let mut acks = self.acks.lock().unwrap();
        for (payload, done) in released {
            acks.push((self.lane, payload, done));
        }
    }
    async fn close(&self) {}
}

/// A route's context around the scripted sink, and the handles a test drives it with.
struct Fakes {
    ctx: Arc<Context>,
    calls: Calls,
    stats: Arc<RouteStats>,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
    pause: Arc<Pause>,
}

impl Fakes {
    async fn new(
        lanes: usize,
        delay: fn(&str) -> Duration,
        answer: fn(&str, u32) -> Option<Result<(), SinkError>>,
        dead_path: &std::path::Path,
    ) -> Fakes {
        let writer = FileWriter::open(dead_path, false).await.unwrap();
        let calls = Calls::default();
        let sink = Scripted {
            start: Instant::now(),
            calls: calls.clone(),
            attempts: Default::default(),
            delay,
            answer,
        };
        let (shutdown, hard_stop) = (CancellationToken::new(), CancellationToken::new());
        let stats = Arc::new(RouteStats::default());
        let pause = Arc::new(Pause::new(false));
        let ctx = Arc::new(Context {
            route: "test".into(),
            metrics: crate::events::RouteMetrics::new("test", lanes, stats.clone()),
            max_attempts: 3,
            sink: Arc::new(sink),
            dead_letter: Arc::new(DeadLetter::File(Arc::new(writer))),
            skip_marked: Some("mqbridge-origin".into()),
            rules: None,
            shutdown: shutdown.clone(),
            hard_stop: hard_stop.clone(),
            pause: pause.clone(),
        });
        Fakes {
            ctx,
            calls,
            stats,
            shutdown,
            hard_stop,
            pause,
        }
    }
}

struct Run {
    calls: Calls,
    dead_path: std::path::PathBuf,
    acks: Arc<Mutex<Vec<(usize, String, bool)>>>,
    stats: Arc<RouteStats>,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
    pause: Arc<Pause>,
    tx: crate::flow::IntakeSender<String>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Run {
    async fn start(
        settings: Settings,
        lanes: usize,
        delay: fn(&str) -> Duration,
        answer: fn(&str, u32) -> Option<Result<(), SinkError>>,
    ) -> Run {
        let dir = tempfile::tempdir().unwrap();
        Self::start_with_dead_letters(
            settings,
            lanes,
            delay,
            answer,
            dir.path().join("dead.jsonl"),
            dir,
        )
        .await
    }

    async fn start_with_dead_letters(
        settings: Settings,
        lanes: usize,
        delay: fn(&str) -> Duration,
        answer: fn(&str, u32) -> Option<Result<(), SinkError>>,
        dead_path: std::path::PathBuf,
        dir: tempfile::TempDir,
    ) -> Run {
        let fakes = Fakes::new(lanes, delay, answer, &dead_path).await;
        let acks = Arc::default();
        let ackers = (0..lanes)
            .map(|lane| Recorder {
                lane,
                acks: Arc::clone(&acks),
            })
            .collect();
        let (tx, intake) = mpsc::unbounded_channel();
        let pipeline = Pipeline {
            ctx: fakes.ctx.clone(),
            settings,
            intake,
            ackers,
        };
        Run {
            calls: fakes.calls,
            dead_path,
            acks,
            stats: fakes.stats,
            shutdown: fakes.shutdown,
            hard_stop: fakes.hard_stop,
            pause: fakes.pause,
            tx,
            task: tokio::spawn(pipeline.run()),
            _dir: dir,
        }
    }

    /// Hands over `payload` on `topic`, received on `lane`.
    fn receive(&self, lane: usize, topic: &str, payload: &str) {
        self.hand_over(lane, topic, payload, false);
    }

    /// A message the bridge published itself (it carries the origin marker).
    fn receive_marked(&self, lane: usize, topic: &str, payload: &str) {
        self.hand_over(lane, topic, payload, true);
    }

    fn hand_over(&self, lane: usize, topic: &str, payload: &str, marked: bool) {
        let mut msg = sample(topic);
        msg.payload = payload.to_owned().into();
        if marked {
            let marker = ("mqbridge-origin".into(), "mqbridge".into());
            msg.properties.user_properties.push(marker);
        }
        let (key, token) = (super::batcher::order_key(topic), payload.to_owned());
        let delivery = Delivery {
            lane,
            key,
            msg,
            token,
        };
        self.tx.send(Box::new(delivery)).unwrap();
    }

    fn acked(&self) -> Vec<(usize, String, bool)> {
        self.acks.lock().unwrap().clone()
    }

    /// The dead letters written so far: (payload, error_kind).
    fn dead_letters(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(&self.dead_path).unwrap_or_default();
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let payload = v["message"]["payload"].as_str().unwrap().to_owned();
                (payload, v["error_kind"].as_str().unwrap().to_owned())
            })
            .collect()
    }

    fn calls(&self) -> Vec<(u64, Vec<String>)> {
        self.calls.lock().unwrap().clone()
    }

    async fn stop(self) -> Self {
        self.shutdown.cancel();
        let mut run = self;
        (&mut run.task).await.unwrap();
        run
    }
}

fn ordered(batch_size: usize, max_wait_ms: u64) -> Settings {
    Settings {
        batch_size,
        max_wait: Duration::from_millis(max_wait_ms),
        ordered: true,
        concurrency: 4,
        window: 1,
    }
}

fn no_delay(_: &str) -> Duration {
    Duration::ZERO
}

fn all_ok(_: &str, _: u32) -> Option<Result<(), SinkError>> {
    Some(Ok(()))
}

/// "a1" fails its first send; everything else is delivered.
fn first_try_of_a1_fails(payload: &str, attempt: u32) -> Option<Result<(), SinkError>> {
    match (payload, attempt) {
        ("a1", 1) => fail(),
        _ => Some(Ok(())),
    }
}

/// Lets the pipeline run until nothing more happens for `d` of virtual time.
async fn settle(d: Duration) {
    tokio::time::sleep(d).await;
}

/// A batch's delivery is one allocation in the pipeline's set of deliveries: its future stays
/// small enough for glibc's per-thread cache (blocks up to 1,032 bytes), with what only
/// retries, dead letters and ordered windows wait on boxed apart. At 1,248 bytes, a route that
/// delivers a message per batch paid a slow allocation (and its consolidation) per message.
#[tokio::test]
async fn a_delivery_future_fits_a_small_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let fakes = Fakes::new(1, no_delay, all_ok, &dir.path().join("dead.jsonl")).await;
    let batch = batcher::Batch {
        items: Vec::new(),
        keys: Vec::new(),
        outcome: None,
        after: Vec::new(),
    };
    let delivery = deliver::deliver(fakes.ctx.clone(), batch);
    let size = std::mem::size_of_val(&delivery);
    assert!(size <= 800, "the delivery future takes {size} bytes");
}

mod failures;
mod order;
mod pause;
mod records;
