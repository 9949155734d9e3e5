//! Order and acks: per-key serialization, retries ahead of later messages of their key, acks in
//! receive order per lane whatever finishes first, batching by count and time, stops.

use super::*;

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
