//! Pause in the pipeline: once set, nothing is sent (no new batch, no retry) until resume,
//! whatever arrives meanwhile; a stop while paused leaves what is held unacknowledged.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_paused_route_sends_nothing_it_receives_until_resume() {
    let run = Run::start(ordered(10, 100), 1, no_delay, all_ok).await;
    run.receive(0, "a", "a1");
    settle(Duration::from_secs(1)).await;
    assert_eq!(run.calls().len(), 1);
    run.pause.set(true);
    // A read under way when the pause came hands on what it brought.
    run.receive(0, "a", "a2");
    run.receive(0, "b", "b1");
    settle(Duration::from_secs(60)).await;
    assert_eq!(run.calls().len(), 1, "sent while paused: {:?}", run.calls());
    let acked: Vec<String> = run.acked().into_iter().map(|a| a.1).collect();
    assert_eq!(acked, ["a1"], "acknowledged while paused");
    assert_eq!(run.stats.snapshot().in_flight, 2);
    run.pause.set(false);
    settle(Duration::from_secs(1)).await;
    let sent: Vec<String> = run.calls().into_iter().flat_map(|c| c.1).collect();
    assert_eq!(sent, ["a1", "a2", "b1"]);
    let acked: Vec<(String, bool)> = run.acked().into_iter().map(|a| (a.1, a.2)).collect();
    let done = |p: &str| (p.to_owned(), true);
    assert_eq!(acked, [done("a1"), done("a2"), done("b1")]);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_for_resume() {
    let run = Run::start(ordered(10, 0), 1, no_delay, first_try_of_a1_fails).await;
    run.receive(0, "a", "a1");
    settle(Duration::from_millis(10)).await;
    run.pause.set(true);
    settle(Duration::from_secs(60)).await;
    assert_eq!(
        run.calls().len(),
        1,
        "retried while paused: {:?}",
        run.calls()
    );
    assert!(run.acked().is_empty());
    run.pause.set(false);
    settle(Duration::from_millis(10)).await;
    assert_eq!(run.calls().len(), 2);
    let acked: Vec<(String, bool)> = run.acked().into_iter().map(|a| (a.1, a.2)).collect();
    assert_eq!(acked, [("a1".to_owned(), true)]);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_stop_while_paused_delivers_nothing_and_leaves_it_unacknowledged() {
    let run = Run::start(ordered(10, 0), 2, no_delay, all_ok).await;
    run.pause.set(true);
    run.receive(0, "a", "a1");
    run.receive(1, "b", "b1");
    run.receive(0, "a", "a2");
    settle(Duration::from_secs(1)).await;
    let run = run.stop().await;
    assert!(run.calls().is_empty(), "{:?}", run.calls());
    let mut acked = run.acked();
    acked.sort();
    let given_up = |lane: usize, p: &str| (lane, p.to_owned(), false);
    assert_eq!(
        acked,
        [given_up(0, "a1"), given_up(0, "a2"), given_up(1, "b1")]
    );
}
