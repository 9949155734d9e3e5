//! Failures: messages refused for good are dead-lettered in receive order, a dead-letter
//! destination that fails holds them, a function failure counts attempts, refused settings
//! are retried slowly, and a destination's wish to be left alone is honoured.

use super::*;

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
