//! Load sharing and acknowledgement, with the file sink (no Kafka): several filters and several
//! consumers per route split the stream, every message arrives exactly once in a clean run,
//! and a graceful stop acknowledges what was delivered (nothing is redelivered after restart).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::config::{Config, Connection, Route};
use common::mqtt::Publisher;
use common::{eventually, free_port, mosquitto, Bridge};

fn config(mqtt_port: u16, admin: u16, consumers: u32, qos: u8) -> String {
    Config::new(mqtt_port, "load")
        .mqtt("receive_maximum", 32)
        .connection("out", Connection::file("out.jsonl"))
        .route(
            Route::new("fleet", "fleet/a/#", "out")
                .filters(&["fleet/a/#", "fleet/b/+"])
                .set("consumers", consumers)
                .set("qos", qos as u32),
        )
        .admin(admin)
        .text()
}

fn payload_counts(bridge: &Bridge) -> HashMap<String, usize> {
    common::file_payloads(&bridge.dir.join("out.jsonl"))
}

async fn publish_both_filters(port: u16, numbers: std::ops::Range<usize>) {
    let mut publisher = Publisher::connect(port).await;
    publisher
        .publish_numbered(numbers, |i| {
            if i % 2 == 0 {
                format!("fleet/a/x/{i}")
            } else {
                "fleet/b/y".into()
            }
        })
        .await;
    publisher.wait_acked(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn several_filters_and_consumers_share_the_load_exactly_once() {
    const N: usize = 3_000;
    let broker = mosquitto();
    let admin = free_port();
    let bridge = Bridge::start(&config(broker.port, admin, 3, 1));
    bridge.wait_subscribed(0, 6);
    publish_both_filters(broker.port, 0..N).await;

    let all = eventually(Duration::from_secs(30), || {
        payload_counts(&bridge).len() >= N
    })
    .await;
    let counts = payload_counts(&bridge);
    assert!(
        all,
        "{} of {N} arrived; log:\n{}",
        counts.len(),
        bridge.log_text()
    );
    assert!(
        counts.values().all(|&c| c == 1),
        "duplicates in a clean run"
    );
    let text = common::bridge::http_get(admin, "/metrics").await;
    let per_consumer: Vec<f64> = (1..=3)
        .map(|n| {
            let key =
                format!("mqbridge_messages_received_total{{route=\"fleet\",consumer=\"{n}\"}}");
            text.lines()
                .find(|l| l.starts_with(&key))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                .unwrap_or(0.0)
        })
        .collect();
    eprintln!("messages per consumer: {per_consumer:?}");
    assert_eq!(per_consumer.iter().sum::<f64>() as usize, N);
    assert!(
        per_consumer.iter().all(|&c| c > 0.0),
        "a consumer got nothing: {per_consumer:?}"
    );
}

#[tokio::test]
async fn graceful_stop_acknowledges_what_was_delivered() {
    const N: usize = 1_000;
    let broker = mosquitto();
    let admin = free_port();
    let mut bridge = Bridge::start(&config(broker.port, admin, 2, 1));
    bridge.wait_subscribed(0, 4);
    publish_both_filters(broker.port, 0..N).await;
    let all = eventually(Duration::from_secs(30), || {
        payload_counts(&bridge).len() >= N
    })
    .await;
    assert!(
        all,
        "{} of {N} arrived; log:\n{}",
        payload_counts(&bridge).len(),
        bridge.log_text()
    );

    assert_eq!(
        bridge.stop(),
        Some(0),
        "exit code after SIGTERM; log:\n{}",
        bridge.log_text()
    );
    let before = bridge.subscribed_count();
    bridge.spawn();
    bridge.wait_subscribed(before, 4);
    // Witnesses published after the restart: the broker sends a session's held messages on
    // reconnection before anything newer, so once every witness is in, so is any redelivery.
    const WITNESSES: usize = 16;
    publish_both_filters(broker.port, N..N + WITNESSES).await;
    assert!(
        eventually(Duration::from_secs(30), || {
            payload_counts(&bridge).len() >= N + WITNESSES
        })
        .await,
        "the witnesses did not arrive; log:\n{}",
        bridge.log_text()
    );
    let counts = payload_counts(&bridge);
    assert_eq!(counts.len(), N + WITNESSES);
    let redelivered: usize = counts.values().map(|c| c - 1).sum();
    assert_eq!(
        redelivered,
        0,
        "messages redelivered after a graceful stop; log:\n{}",
        bridge.log_text()
    );
}
