//! The in-flight window holds on mosquitto 2.0.11, which sends a client more than its Receive
//! Maximum: with Kafka slowed to a trickle and the broker flooded with 16 KiB messages, each
//! consumer holds at most its window plus what one socket read brings, memory stays flat and
//! the paused consumers keep their connections. And messages too large for the sink reach the
//! bridge (the default packet limit is the protocol's) and are dead-lettered, not dropped.

mod common;

use std::time::Duration;

use common::config::{Config, Connection, Route};
use common::function::await_dead_letters;
use common::kafka::{all_arrived, create_topic};
use common::mqtt::Publisher;
use common::{
    free_port, mosquitto, mosquitto_log, mosquitto_verbose, unique, Bridge, KafkaUnderTest,
};

const PARTITIONS: i32 = 2;

/// `[mqtt]` on the broker at 127.0.0.1:`mqtt_port` with the client id prefix `prefix`, the
/// connection `kafka` to `bootstrap`, the route "load" (`load/#` to `topic`, two consumers), the
/// dead-letter file and the admin API on `admin`.
fn config(mqtt_port: u16, bootstrap: &str, topic: &str, admin: u16, prefix: &str) -> Config {
    Config::new(mqtt_port, "window")
        .mqtt("client_id_prefix", prefix)
        .connection(
            "kafka",
            Connection::kafka(bootstrap).librdkafka("reconnect.backoff.max.ms", "500"),
        )
        .route(
            Route::new("load", "load/#", "kafka")
                .set("consumers", 2)
                .set("topic", topic),
        )
        .dead_letter("dead.jsonl")
        .admin(admin)
}

/// Each consumer's high-water mark of messages held.
async fn most_held(bridge: &Bridge, admin: u16) -> Vec<f64> {
    let mut most = Vec::new();
    for consumer in ["1", "2"] {
        let label = format!("consumer=\"{consumer}\"");
        let name = "mqbridge_inflight_messages_max";
        most.push(bridge.metric_where(admin, name, &label).await);
    }
    most
}

#[tokio::test]
async fn the_window_holds_when_the_broker_sends_past_it_and_the_sink_is_slow() {
    const N: usize = 2_000;
    const WINDOW: usize = 64;
    /// What one socket read can bring past a window one short of full (rumqttc reads up to
    /// nine packets a time).
    const ONE_READ: usize = 9;
    let broker = mosquitto_verbose();
    let kafka = KafkaUnderTest::start().await;
    let topic = unique("window");
    create_topic(&kafka.bootstrap(), &topic, PARTITIONS).await;
    let admin = free_port();
    // A 5 s keep-alive: paused for many seconds, the consumers must still ping.
    let prefix = unique("window");
    let bridge = Bridge::start(
        &config(broker.port, &kafka.bootstrap(), &topic, admin, &prefix)
            .mqtt("receive_maximum", WINDOW as i64)
            .mqtt("keep_alive", "5s")
            .text(),
    );
    bridge.wait_subscribed(0, 2);
    let rss_before = bridge.rss_kib();
    // Kafka at about 60 messages of 16 KiB a second: far slower than the broker.
    kafka.proxy.throttle(Some(1_000_000));

    let mut publisher = Publisher::connect(broker.port).await;
    let padding = "x".repeat(16 * 1024);
    for i in 0..N {
        let payload = format!("msg-{i}|{padding}");
        let topic = format!("load/{}", i % 10);
        publisher.publish(&topic, payload, Default::default()).await;
    }
    publisher.wait_acked(Duration::from_secs(60)).await;
    let pings = |log: &str, consumer: u32| {
        // The route reads through the connections of the routes to `kafka`.
        let from = format!("Received PINGREQ from {prefix}.kafka-{consumer}");
        log.matches(&from).count()
    };
    let before = mosquitto_log(&broker);
    let pings_before = [pings(&before, 1), pings(&before, 2)];
    let mut rss_most = bridge.rss_kib();
    for _ in 0..16 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss_most = rss_most.max(bridge.rss_kib());
    }
    let delivered = bridge
        .metric(admin, "mqbridge_messages_delivered_total")
        .await;
    let most = most_held(&bridge, admin).await;
    eprintln!(
        "most held per consumer {most:?}; {delivered} delivered while slow; RSS {rss_before} KiB \
         before, at most {rss_most} KiB"
    );
    assert!(
        delivered < N as f64 / 2.0,
        "the sink was not slow: {delivered} delivered"
    );
    for m in &most {
        assert!(
            *m as usize <= WINDOW + ONE_READ,
            "a consumer held {m} messages with a window of {WINDOW}"
        );
        assert!(*m as usize >= WINDOW, "the window never filled: {most:?}");
    }
    assert!(
        rss_most < rss_before + 32 * 1024,
        "RSS grew from {rss_before} to {rss_most} KiB"
    );
    let log = bridge.log_text();
    assert!(
        !log.contains("consumer disconnected"),
        "a paused consumer lost its connection:\n{log}"
    );
    // Eight seconds with a 5 s keep-alive: each consumer pinged while its reads were stopped.
    let after = mosquitto_log(&broker);
    for consumer in [1, 2] {
        let sent = pings(&after, consumer) - pings_before[consumer as usize - 1];
        assert!(sent >= 1, "consumer {consumer} sent no ping while paused");
    }

    kafka.proxy.throttle(None);
    let duplicates = all_arrived(&kafka.bootstrap(), &topic, PARTITIONS, N, || {
        bridge.log_text()
    });
    assert_eq!(duplicates, 0);
}

#[tokio::test]
async fn messages_too_large_for_kafka_are_dead_lettered_and_the_rest_flow() {
    let broker = mosquitto();
    let kafka = KafkaUnderTest::start().await;
    let topic = unique("large");
    create_topic(&kafka.bootstrap(), &topic, PARTITIONS).await;
    let admin = free_port();
    let prefix = unique("large");
    let bridge =
        Bridge::start(&config(broker.port, &kafka.bootstrap(), &topic, admin, &prefix).text());
    bridge.wait_subscribed(0, 2);
    let rss_before = bridge.rss_kib();

    let mut publisher = Publisher::connect(broker.port).await;
    let sizes = [(1, 2 << 20), (3, 16 << 20)];
    for i in 0..5 {
        let payload = match sizes.iter().find(|(at, _)| *at == i) {
            Some((_, size)) => format!("msg-{i}|{}", "y".repeat(*size)),
            None => format!("msg-{i}"),
        };
        publisher
            .publish("load/big", payload, Default::default())
            .await;
    }
    publisher.wait_acked(Duration::from_secs(60)).await;

    let dead_path = bridge.dir.join("dead.jsonl");
    // Only complete lines: the 16 MiB entry takes a while to write.
    let dead = await_dead_letters(&dead_path, 2, Duration::from_secs(60)).await;
    assert_eq!(dead.len(), 2);
    for (entry, (at, size)) in dead.iter().zip(sizes) {
        assert_eq!(entry["error_kind"], "too_large");
        let payload = entry["message"]["payload"].as_str().unwrap();
        assert!(payload.starts_with(&format!("msg-{at}|")));
        assert_eq!(payload.len(), format!("msg-{at}|").len() + size);
    }
    // The three small ones went through; msg-1 and msg-3 are accounted for above.
    let records = common::kafka::read_all(
        &kafka.bootstrap(),
        &topic,
        PARTITIONS,
        Duration::from_secs(30),
        |r| r.len() >= 3,
    );
    let mut got: Vec<String> = records.iter().map(common::kafka::number).collect();
    got.sort();
    assert_eq!(got, ["msg-0", "msg-2", "msg-4"]);
    let peak = common::proc_status_kib(bridge.pid(), "VmHWM").unwrap();
    eprintln!("RSS {rss_before} KiB before, peak {peak} KiB");
    // A 16 MiB message is held while it is dead-lettered (its copy, its JSON line and the read
    // buffer it came in): a few times its size, not more.
    assert!(
        peak < rss_before + 5 * 16 * 1024,
        "peak RSS {peak} KiB from {rss_before} KiB"
    );
}
