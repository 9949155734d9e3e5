//! The pipeline driven end to end with a scripted sink and a recording acker, under paused
//! time: per-key serialization, retries ahead of later messages of their key, acks in receive
//! order per lane whatever finishes first, batching by count and time, a sink that breaks its
//! contract, and a hard stop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::connectors::file::FileWriter;
use crate::connectors::{Retry, Sink, SinkError};
use crate::dead_letter::DeadLetter;
use crate::message::tests::sample;
use crate::message::Message;
use crate::sources::{Acker, Delivery};

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
            metrics: crate::events::RouteMetrics::new("test", lanes),
            max_attempts: 3,
            sink: Arc::new(sink),
            dead_letter: Arc::new(DeadLetter::File(Arc::new(writer))),
            skip_marked: Some("mqbridge-origin".into()),
            shutdown: shutdown.clone(),
            hard_stop: hard_stop.clone(),
            pause: pause.clone(),
            stats: stats.clone(),
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
    tx: mpsc::UnboundedSender<Delivery<String>>,
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
        self.tx.send(delivery).unwrap();
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

#[tokio::test(start_paused = true)]
async fn acks_follow_receive_order_when_a_later_batch_finishes_first() {
    fn slow_first(topic: &str) -> Duration {
        match topic {
            "slow" => Duration::from_millis(100),
            _ => Duration::from_millis(10),
        }
    }
    let run = Run::start(ordered(1, 0), 1, slow_first, all_ok).await;
    run.receive(0, "slow", "s0");
    run.receive(0, "fast", "f1");
    run.receive(0, "fast", "f2");
    settle(Duration::from_millis(50)).await;
    let calls = run.calls();
    assert_eq!(
        calls.len(),
        3,
        "both fast batches went while slow was out: {calls:?}"
    );
    assert!(
        run.acked().is_empty(),
        "nothing acked before s0: {:?}",
        run.acked()
    );
    settle(Duration::from_millis(60)).await;
    let order: Vec<String> = run.acked().into_iter().map(|a| a.1).collect();
    assert_eq!(order, ["s0", "f1", "f2"]);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn what_the_bridge_published_itself_is_acknowledged_without_delivery() {
    let run = Run::start(ordered(10, 0), 1, no_delay, all_ok).await;
    run.receive(0, "a", "a1");
    run.receive_marked(0, "a", "echo");
    run.receive(0, "a", "a2");
    settle(Duration::from_secs(1)).await;
    let sent: Vec<String> = run.calls().into_iter().flat_map(|c| c.1).collect();
    assert_eq!(sent, ["a1", "a2"]);
    let acked: Vec<(String, bool)> = run.acked().into_iter().map(|a| (a.1, a.2)).collect();
    let done = |p: &str| (p.to_owned(), true);
    assert_eq!(acked, [done("a1"), done("echo"), done("a2")]);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_message_is_retried_before_anything_later_of_its_topic() {
    let run = Run::start(ordered(10, 0), 1, no_delay, first_try_of_a1_fails).await;
    run.receive(0, "a", "a1");
    settle(Duration::from_millis(1)).await;
    run.receive(0, "a", "a2");
    run.receive(0, "b", "b1");
    settle(Duration::from_secs(1)).await;
    let calls: Vec<Vec<String>> = run.calls().into_iter().map(|c| c.1).collect();
    assert_eq!(calls, [vec!["a1"], vec!["b1"], vec!["a1"], vec!["a2"]]);
    let acked: Vec<String> = run.acked().into_iter().map(|a| a.1).collect();
    assert_eq!(acked, ["a1", "a2", "b1"]);
    assert_eq!(run.stats.snapshot().retried, 1);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_stop_during_a_retry_gives_up_the_rest_of_the_topic_too() {
    fn a1_fails(payload: &str, _: u32) -> Option<Result<(), SinkError>> {
        match payload {
            "a1" => fail(),
            _ => Some(Ok(())),
        }
    }
    let run = Run::start(ordered(1, 0), 1, no_delay, a1_fails).await;
    run.receive(0, "a", "a1");
    run.receive(0, "a", "a2");
    run.receive(0, "b", "b1");
    settle(Duration::from_millis(150)).await;
    let run = run.stop().await;
    let sent: Vec<Vec<String>> = run.calls().into_iter().map(|c| c.1).collect();
    assert!(
        sent.iter().all(|c| c != &["a2"]),
        "a2 went out while a1 waited for its retry: {sent:?}"
    );
    // a1 and a2 stay with the broker, which redelivers them in their order; b1 is done.
    let acked: Vec<(String, bool)> = run.acked().into_iter().map(|a| (a.1, a.2)).collect();
    assert_eq!(
        acked,
        [
            ("a1".into(), false),
            ("a2".into(), false),
            ("b1".into(), true)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_message_after_an_idle_spell_waits_max_wait_for_company() {
    let run = Run::start(ordered(10, 100), 1, no_delay, all_ok).await;
    settle(Duration::from_secs(5)).await;
    run.receive(0, "t", "a");
    settle(Duration::from_millis(10)).await;
    run.receive(0, "u", "b");
    settle(Duration::from_millis(200)).await;
    let calls = run.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].1, ["a", "b"]);
    assert_eq!(calls[0].0, 5_100);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_partial_batch_waits_max_wait_and_a_full_one_goes_at_once() {
    let run = Run::start(ordered(3, 50), 1, no_delay, all_ok).await;
    for (i, topic) in ["x", "y", "x"].iter().enumerate() {
        run.receive(0, topic, &format!("m{i}"));
    }
    run.receive(0, "z", "m3");
    settle(Duration::from_millis(200)).await;
    let calls = run.calls();
    // Key after key, each in receive order.
    assert_eq!(calls[0], (0, vec!["m0".into(), "m2".into(), "m1".into()]));
    assert_eq!(calls[1], (50, vec!["m3".into()]), "{calls:?}");
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn each_lane_is_acked_in_its_own_order() {
    fn lane_a_slow(topic: &str) -> Duration {
        Duration::from_millis(if topic.starts_with('a') { 100 } else { 5 })
    }
    let run = Run::start(ordered(1, 0), 2, lane_a_slow, all_ok).await;
    run.receive(0, "a", "l0-a");
    run.receive(1, "b", "l1-b");
    run.receive(0, "c", "l0-c");
    settle(Duration::from_millis(50)).await;
    // Lane 1 is not held back by lane 0's slow message.
    assert_eq!(run.acked(), [(1, "l1-b".to_owned(), true)]);
    settle(Duration::from_millis(100)).await;
    let lane0: Vec<String> = run
        .acked()
        .into_iter()
        .filter(|a| a.0 == 0)
        .map(|a| a.1)
        .collect();
    assert_eq!(lane0, ["l0-a", "l0-c"]);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_sink_that_returns_too_few_outcomes_is_retried_not_taken_as_delivered() {
    fn drops_b_once(payload: &str, attempt: u32) -> Option<Result<(), SinkError>> {
        (payload != "b" || attempt > 1).then_some(Ok(()))
    }
    let run = Run::start(ordered(10, 0), 1, no_delay, drops_b_once).await;
    run.receive(0, "t", "a");
    run.receive(0, "t", "b");
    settle(Duration::from_secs(1)).await;
    let calls: Vec<Vec<String>> = run.calls().into_iter().map(|c| c.1).collect();
    assert_eq!(calls, [vec!["a", "b"], vec!["b"]]);
    let acked: Vec<(String, bool)> = run.acked().into_iter().map(|a| (a.1, a.2)).collect();
    assert_eq!(acked, [("a".into(), true), ("b".into(), true)]);
    assert_eq!(run.stats.snapshot().retried, 1);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn unordered_routes_send_a_topic_in_several_batches_at_once() {
    fn slow(_: &str) -> Duration {
        Duration::from_millis(100)
    }
    let settings = Settings {
        ordered: false,
        ..ordered(1, 0)
    };
    let run = Run::start(settings, 1, slow, all_ok).await;
    for i in 0..3 {
        run.receive(0, "same", &format!("m{i}"));
    }
    settle(Duration::from_millis(10)).await;
    assert_eq!(run.calls().len(), 3, "{:?}", run.calls());
    settle(Duration::from_millis(100)).await;
    assert_eq!(run.acked().len(), 3);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_graceful_stop_delivers_what_was_received_and_a_hard_stop_gives_up() {
    fn never(_: &str, _: u32) -> Option<Result<(), SinkError>> {
        fail()
    }
    let run = Run::start(ordered(10, 60_000), 1, no_delay, never).await;
    run.receive(0, "t", "held");
    settle(Duration::from_millis(10)).await;
    assert!(run.calls().is_empty(), "waiting for max_wait");
    run.shutdown.cancel();
    settle(Duration::from_millis(10)).await;
    assert_eq!(run.calls().len(), 1, "the stop sent what was held");
    let run = run.stop().await;
    assert_eq!(
        run.acked(),
        [(0, "held".to_owned(), false)],
        "given up, not acked"
    );

    fn hangs(_: &str) -> Duration {
        Duration::from_secs(3600)
    }
    let run = Run::start(ordered(10, 0), 1, hangs, all_ok).await;
    run.receive(0, "t", "stuck");
    settle(Duration::from_millis(10)).await;
    run.shutdown.cancel();
    settle(Duration::from_secs(60)).await;
    assert!(
        !run.task.is_finished(),
        "a graceful stop waits for the send"
    );
    run.hard_stop.cancel();
    let run = run.stop().await;
    assert_eq!(run.acked(), [(0, "stuck".to_owned(), false)]);
}

#[derive(Debug, thiserror::Error)]
#[error("refused for good")]
struct Refused;

fn refuses_bad(payload: &str, _: u32) -> Option<Result<(), SinkError>> {
    match payload.starts_with("bad") {
        true => Some(Err(SinkError::new("refused", Retry::Permanent, Refused))),
        false => Some(Ok(())),
    }
}

/// Real time: the dead-letter file is written by a thread of its own, which paused time would
/// not wait for.
#[tokio::test]
async fn refused_messages_are_dead_lettered_in_receive_order_then_acked() {
    let run = Run::start(ordered(10, 0), 1, no_delay, refuses_bad).await;
    run.receive(0, "b", "bad-1");
    run.receive(0, "a", "good");
    run.receive(0, "a", "bad-2");
    for _ in 0..200 {
        if run.acked().len() == 3 {
            break;
        }
        settle(Duration::from_millis(10)).await;
    }
    // One batch, topic after topic ("b", then "a"): the sink saw "bad-1" first anyway.
    assert_eq!(run.calls().len(), 1, "a permanent failure is not retried");
    let dead = run.dead_letters();
    assert_eq!(
        dead,
        [
            ("bad-1".to_owned(), "refused".to_owned()),
            ("bad-2".to_owned(), "refused".to_owned())
        ]
    );
    let acked: Vec<(String, bool)> = run.acked().into_iter().map(|a| (a.1, a.2)).collect();
    assert_eq!(
        acked,
        [
            ("bad-1".into(), true),
            ("good".into(), true),
            ("bad-2".into(), true)
        ]
    );
    assert_eq!(run.stats.snapshot().dead_lettered, 2);
    run.stop().await;
}

/// `/dev/full` refuses every write: the dead-letter destination is down. Real time, on this
/// thread, so that the test can count the failed attempts in the log.
#[tokio::test]
async fn a_failing_dead_letter_destination_holds_the_message_unacknowledged() {
    let log = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || LogWriter(sink.clone()))
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let dir = tempfile::tempdir().unwrap();
    let run = Run::start_with_dead_letters(
        ordered(10, 0),
        1,
        no_delay,
        refuses_bad,
        "/dev/full".into(),
        dir,
    )
    .await;
    run.receive(0, "t", "bad");
    run.receive(0, "u", "fine");
    // Backoff from 100 ms: 100 + 200 + 400 ms passes three attempts.
    settle(Duration::from_millis(1_000)).await;
    let text = String::from_utf8(log.lock().unwrap().clone()).unwrap();
    let failures = text.matches("dead-letter write failed").count();
    assert!(failures >= 3, "{failures} failed attempts:\n{text}");
    let acked: Vec<(String, bool)> = run.acked().into_iter().map(|a| (a.1, a.2)).collect();
    assert!(
        acked.is_empty(),
        "acked while its dead letter failed: {acked:?}"
    );
    let stats = run.stats.snapshot();
    assert_eq!(stats.dead_lettered, 0);
    assert_eq!(stats.in_flight, 2, "both held: they share a batch");
    // A stop gives the message up: it stays with the broker, never acknowledged.
    let run = run.stop().await;
    let acked: Vec<(String, bool)> = run.acked().into_iter().map(|a| (a.1, a.2)).collect();
    assert_eq!(acked, [("bad".into(), false), ("fine".into(), true)]);
}

/// Collects what a test's log subscriber writes.
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the function failed")]
struct FunctionFailed;

fn function_fails(payload: &str, _: u32) -> Option<Result<(), SinkError>> {
    match payload.starts_with("bad") {
        true => Some(Err(SinkError::new(
            "function_error",
            Retry::Attempts,
            FunctionFailed,
        ))),
        false => Some(Ok(())),
    }
}

/// Real time: the dead-letter file is written by a thread of its own.
#[tokio::test]
async fn a_function_failure_is_tried_max_attempts_times_then_dead_lettered() {
    let run = Run::start(ordered(10, 0), 1, no_delay, function_fails).await;
    run.receive(0, "t", "bad");
    run.receive(0, "u", "good");
    for _ in 0..300 {
        if run.acked().len() == 2 {
            break;
        }
        settle(Duration::from_millis(10)).await;
    }
    let sent: Vec<Vec<String>> = run.calls().into_iter().map(|c| c.1).collect();
    assert_eq!(sent, [vec!["bad", "good"], vec!["bad"], vec!["bad"]]);
    let text = std::fs::read_to_string(&run.dead_path).unwrap();
    let entry: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(entry["error_kind"], "function_error");
    assert_eq!(entry["attempts"], 3);
    assert_eq!(entry["message"]["payload"], "bad");
    let acked: Vec<(String, bool)> = run.acked().into_iter().map(|a| (a.1, a.2)).collect();
    assert_eq!(acked, [("bad".into(), true), ("good".into(), true)]);
    run.stop().await;
}

#[derive(Debug, thiserror::Error)]
#[error("AuthFailure.SecretIdNotFound")]
struct BadCredentials;

#[tokio::test(start_paused = true)]
async fn refused_settings_are_retried_slowly_and_nothing_is_dead_lettered() {
    fn refused_twice(_: &str, attempt: u32) -> Option<Result<(), SinkError>> {
        match attempt {
            1 | 2 => Some(Err(SinkError::new(
                "configuration",
                Retry::Configuration,
                BadCredentials,
            ))),
            _ => Some(Ok(())),
        }
    }
    let run = Run::start(ordered(10, 0), 1, no_delay, refused_twice).await;
    run.receive(0, "t", "m");
    settle(Duration::from_secs(120)).await;
    let at: Vec<u64> = run.calls().into_iter().map(|c| c.0).collect();
    assert_eq!(at.len(), 3, "{at:?}");
    assert!(
        at[1] >= 30_000 && at[2] - at[1] >= 30_000,
        "retried too fast: {at:?}"
    );
    assert_eq!(run.acked(), [(0, "m".to_owned(), true)]);
    assert_eq!(run.stats.snapshot().dead_lettered, 0);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_as_long_as_the_destination_asks() {
    fn busy_once(_: &str, attempt: u32) -> Option<Result<(), SinkError>> {
        match attempt {
            1 => Some(Err(SinkError::new(
                "throttled",
                Retry::Retriable,
                FunctionFailed,
            )
            .with_retry_after(Duration::from_secs(7)))),
            _ => Some(Ok(())),
        }
    }
    let run = Run::start(ordered(10, 0), 1, no_delay, busy_once).await;
    run.receive(0, "t", "m");
    settle(Duration::from_secs(20)).await;
    let at: Vec<u64> = run.calls().into_iter().map(|c| c.0).collect();
    assert_eq!(at, [0, 7_000]);
    run.stop().await;
}

mod pause;
mod records;
