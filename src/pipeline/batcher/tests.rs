//! The batcher alone: when batches are due, per-key order, abandoned keys, idle keys.

use super::*;
use crate::message::tests::sample;

fn settings(batch_size: usize, max_wait_ms: u64, ordered: bool) -> Settings {
    Settings {
        batch_size,
        max_wait: Duration::from_millis(max_wait_ms),
        ordered,
        concurrency: 4,
        window: 1,
    }
}

/// Hands `b` message `seq` on `topic`, from lane 0.
fn push(b: &mut Batcher, seq: u64, topic: &str, now: Instant) {
    b.push(0, seq, sample(topic), order_key(topic), now);
}

fn seqs(batch: &Batch) -> Vec<u64> {
    batch.items.iter().map(|i| i.seq).collect()
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_goes_at_once_a_partial_one_after_max_wait() {
    let mut b = Batcher::new(settings(3, 100, false));
    let t0 = Instant::now();
    for seq in 0..4 {
        push(&mut b, seq, "a", t0);
    }
    let first = b.next_batch(t0, false, 0).expect("a full batch is due");
    assert_eq!(seqs(&first), [0, 1, 2]);
    assert!(
        b.next_batch(t0, false, 1).is_none(),
        "one left, not due yet"
    );
    let due = b.deadline().expect("the leftover has a deadline");
    assert_eq!(due, t0 + Duration::from_millis(100));
    tokio::time::advance(Duration::from_millis(99)).await;
    assert!(b.next_batch(Instant::now(), false, 1).is_none());
    tokio::time::advance(Duration::from_millis(1)).await;
    let rest = b
        .next_batch(Instant::now(), false, 1)
        .expect("due after max_wait");
    assert_eq!(seqs(&rest), [3]);
    assert!(b.is_empty() && b.deadline().is_none());
}

#[tokio::test(start_paused = true)]
async fn the_wait_starts_with_the_first_message() {
    let mut b = Batcher::new(settings(10, 50, true));
    let t0 = Instant::now();
    push(&mut b, 0, "a", t0);
    tokio::time::advance(Duration::from_millis(30)).await;
    push(&mut b, 1, "b", Instant::now());
    assert_eq!(b.deadline(), Some(t0 + Duration::from_millis(50)));
    tokio::time::advance(Duration::from_millis(20)).await;
    let batch = b.next_batch(Instant::now(), false, 0).unwrap();
    assert_eq!(seqs(&batch), [0, 1]);
}

#[test]
fn closing_sends_what_is_there_and_concurrency_is_bounded() {
    let mut b = Batcher::new(settings(100, 60_000, false));
    let now = Instant::now();
    push(&mut b, 0, "a", now);
    assert!(b.next_batch(now, false, 0).is_none());
    assert!(
        b.next_batch(now, true, 4).is_none(),
        "four batches out: no room"
    );
    assert_eq!(seqs(&b.next_batch(now, true, 3).unwrap()), [0]);
}

#[test]
fn an_ordered_key_has_one_batch_out_at_a_time() {
    let mut b = Batcher::new(settings(2, 0, true));
    let now = Instant::now();
    push(&mut b, 0, "a", now);
    push(&mut b, 1, "a", now);
    push(&mut b, 2, "a", now);
    push(&mut b, 3, "b", now);
    let first = b.next_batch(now, false, 0).unwrap();
    assert_eq!(seqs(&first), [0, 1]);
    assert_eq!(first.keys.len(), 1);
    // "a" is busy: its third message waits; "b" goes meanwhile.
    let second = b.next_batch(now, false, 1).unwrap();
    assert_eq!(seqs(&second), [3]);
    assert!(b.next_batch(now, false, 2).is_none());
    push(&mut b, 4, "a", now);
    assert!(b.next_batch(now, true, 2).is_none(), "a is still busy");
    b.finish(second.keys, true, now);
    assert!(b.next_batch(now, true, 1).is_none());
    b.finish(first.keys, true, now);
    let third = b.next_batch(now, false, 0).unwrap();
    assert_eq!(seqs(&third), [2, 4], "the key's order holds");
    b.finish(third.keys, true, now);
    assert!(b.is_empty());
}

#[test]
fn an_abandoned_key_gives_up_what_it_holds_and_what_comes_later() {
    let mut b = Batcher::new(settings(1, 0, true));
    let now = Instant::now();
    push(&mut b, 0, "a", now);
    push(&mut b, 1, "a", now);
    push(&mut b, 2, "b", now);
    let first = b.next_batch(now, true, 0).unwrap();
    assert_eq!(seqs(&first), [0]);
    b.abandon(first.keys);
    push(&mut b, 3, "a", now);
    let given_up: Vec<u64> = b.take_given_up().iter().map(|i| i.seq).collect();
    assert_eq!(given_up, [1, 3]);
    assert_eq!(seqs(&b.next_batch(now, true, 0).unwrap()), [2]);
    assert!(b.next_batch(now, true, 0).is_none());
    assert!(b.is_empty());
}

#[test]
fn idle_keys_are_swept_once_there_are_many() {
    let mut b = Batcher::new(settings(1, 0, true));
    let now = Instant::now();
    for seq in 0..3 * MAX_IDLE_KEYS as u64 {
        push(&mut b, seq, &format!("vehicle/{seq}"), now);
        let batch = b.next_batch(now, false, 0).unwrap();
        b.finish(batch.keys, true, now);
    }
    assert!(b.is_empty());
    assert!(
        b.keys_kept() <= MAX_IDLE_KEYS + 1,
        "{} keys kept",
        b.keys_kept()
    );
}

#[test]
fn an_unordered_route_mixes_keys_in_receive_order() {
    let mut b = Batcher::new(settings(3, 0, false));
    let now = Instant::now();
    for (seq, topic) in ["a", "b", "a", "c", "a"].iter().enumerate() {
        push(&mut b, seq as u64, topic, now);
    }
    assert_eq!(seqs(&b.next_batch(now, false, 0).unwrap()), [0, 1, 2]);
    assert_eq!(seqs(&b.next_batch(now, false, 1).unwrap()), [3, 4]);
}

#[test]
fn many_keys_fill_one_batch() {
    let mut b = Batcher::new(settings(64, 0, true));
    let now = Instant::now();
    for seq in 0..64 {
        push(&mut b, seq, &format!("t/{}", seq % 16), now);
    }
    let batch = b.next_batch(now, false, 0).unwrap();
    assert_eq!(batch.items.len(), 64);
    assert_eq!(batch.keys.len(), 16);
    for t in 0..16 {
        let topic = format!("t/{t}");
        let of_topic: Vec<u64> = batch
            .items
            .iter()
            .filter(|i| i.msg.topic == topic)
            .map(|i| i.seq)
            .collect();
        assert_eq!(of_topic.len(), 4);
        assert!(
            of_topic.windows(2).all(|w| w[0] < w[1]),
            "{topic}: {of_topic:?}"
        );
    }
}

#[test]
fn once_a_batch_failed_a_send_nothing_newer_of_its_keys_goes_out_before_it() {
    let mut b = Batcher::new(Settings {
        window: 2,
        ..settings(2, 0, true)
    });
    let t0 = Instant::now();
    push(&mut b, 0, "a", t0);
    push(&mut b, 1, "a", t0);
    let first = b.next_batch(t0, false, 0).expect("a full batch");
    assert_eq!(seqs(&first), [0, 1]);
    // The first batch's send failed: it will send again, so what comes of `a` waits for it
    // (though the window of two would let a second batch of `a` go), while `b` flows on.
    let sent = first
        .outcome
        .as_ref()
        .expect("a window above one follows batches");
    sent.send_replace(Sent::Failed);
    push(&mut b, 2, "a", t0);
    push(&mut b, 3, "a", t0);
    push(&mut b, 4, "b", t0);
    let second = b.next_batch(t0, true, 1).expect("b may go");
    assert_eq!(seqs(&second), [4]);
    assert!(
        b.next_batch(t0, true, 2).is_none(),
        "`a` waits for the retry"
    );
    // The first batch done after its retry: `a` goes on.
    sent.send_replace(Sent::Done(false));
    b.finish(first.keys.clone(), false, t0);
    b.finish(second.keys.clone(), true, t0);
    let third = b.next_batch(t0, true, 0).expect("`a` again");
    assert_eq!(seqs(&third), [2, 3]);
}

#[test]
fn a_batch_on_its_way_lets_the_next_of_its_keys_go_out() {
    let mut b = Batcher::new(Settings {
        window: 2,
        ..settings(2, 0, true)
    });
    let t0 = Instant::now();
    push(&mut b, 0, "a", t0);
    push(&mut b, 1, "a", t0);
    let first = b.next_batch(t0, false, 0).expect("a full batch");
    push(&mut b, 2, "a", t0);
    push(&mut b, 3, "a", t0);
    let second = b.next_batch(t0, false, 1).expect("the window has room");
    assert_eq!(seqs(&second), [2, 3]);
    assert_eq!(second.after.len(), 1, "it follows the first batch of `a`");
    assert!(first.outcome.is_some());
}
