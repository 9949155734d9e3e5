//! Disk buffers: a route with `buffer = { type = "disk" }` acknowledges each message to its
//! source once it is fsynced in the buffer, and delivers from there. Against mosquitto with its
//! default queue (1000 messages per client, the rest dropped) and tansu behind a proxy that
//! the tests cut, for an outage, a SIGKILL during it, a full buffer and a damaged value.
//! Kafka is read from the start of each partition (tansu's fetch from inside a stored batch
//! and its high watermark are never relied on).

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::config::{Config, Connection, Route};
use common::kafka::{all_arrived, create_topic, number, read_all};
use common::mqtt::Publisher;
use common::{free_port, mosquitto_default_queue, unique, Bridge, KafkaUnderTest};

const PARTITIONS: i32 = 3;
const TOPICS: usize = 10;

fn kafka_connection(bootstrap: &str) -> Connection {
    Connection::kafka(bootstrap)
        .librdkafka("linger.ms", "5")
        .librdkafka("reconnect.backoff.max.ms", "500")
}

/// `load/#` to the Kafka `topic` through one consumer, with a disk buffer of `max_size` when
/// one is given.
fn config(
    mqtt_port: u16,
    bootstrap: &str,
    topic: &str,
    buffer: Option<&str>,
    admin: u16,
) -> Config {
    let mut route = Route::new("load", "load/#", "kafka")
        .set("consumers", 1)
        .set("topic", topic);
    if let Some(max_size) = buffer {
        route = route
            .set("buffer.type", "disk")
            .set("buffer.max_size", max_size);
    }
    Config::new(mqtt_port, "buffer")
        .connection("kafka", kafka_connection(bootstrap))
        .route(route)
        .dead_letter("dead.jsonl")
        .admin(admin)
}

fn topic_of(i: usize) -> String {
    format!("load/{}", i % TOPICS)
}

/// Publishes `msg-{i}` for `range` at about 2,500 a second, as devices would, not faster
/// than a broker's queue can be drained.
async fn publish_paced(publisher: &mut Publisher, range: std::ops::Range<usize>) {
    let mut at = range.start;
    while at < range.end {
        let end = (at + 250).min(range.end);
        publisher.publish_numbered(at..end, topic_of).await;
        at = end;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    publisher.wait_acked(Duration::from_secs(60)).await;
}

/// Each topic's messages, by the order of their first copies in Kafka, come in the order
/// they were published.
fn assert_first_arrivals_in_order(records: &[rdkafka::message::OwnedMessage]) {
    let mut per_topic: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut seen = HashSet::new();
    for record in records {
        let n: usize = number(record).trim_start_matches("msg-").parse().unwrap();
        if seen.insert(n) {
            per_topic.entry(n % TOPICS).or_default().push(n);
        }
    }
    for (topic, firsts) in per_topic {
        let out_of_order = firsts.windows(2).filter(|w| w[0] > w[1]).count();
        assert_eq!(
            out_of_order, 0,
            "topic load/{topic} out of order: {firsts:?}"
        );
    }
}

/// Kafka down while 20,000 messages arrive, on a broker that keeps 1,000 for the bridge: with
/// a disk buffer every one reaches Kafka, through a SIGKILL of the bridge during the outage;
/// without one, the same run loses what the broker dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_broker_holds_loses_nothing_with_a_disk_buffer() {
    const N: usize = 20_000;
    const HALF: usize = N / 2;
    const WRITTEN: &str = "mqbridge_buffer_written_total";

    // Without a buffer: the premise.
    let lost = {
        let broker = mosquitto_default_queue();
        let kafka = KafkaUnderTest::start().await;
        let topic = unique("unbuffered");
        create_topic(&kafka.bootstrap(), &topic, PARTITIONS).await;
        let admin = free_port();
        let bridge =
            Bridge::start(&config(broker.port, &kafka.bootstrap(), &topic, None, admin).text());
        bridge.wait_subscribed(0, 1);
        let mut publisher = Publisher::connect(broker.port).await;
        kafka.proxy.cut();
        publish_paced(&mut publisher, 0..N).await;
        kafka.proxy.restore();
        // Everything the bridge received is delivered, then nothing more comes.
        let received = "mqbridge_messages_received_total";
        let delivered = "mqbridge_messages_delivered_total";
        let start = std::time::Instant::now();
        loop {
            let (r, d) = (
                bridge.metric(admin, received).await,
                bridge.metric(admin, delivered).await,
            );
            if r > 0.0 && d >= r {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{}",
                bridge.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let received = bridge.metric(admin, received).await as usize;
        let mut distinct = HashSet::new();
        read_all(
            &kafka.bootstrap(),
            &topic,
            PARTITIONS,
            Duration::from_secs(30),
            |r| {
                if let Some(last) = r.last() {
                    distinct.insert(number(last));
                }
                distinct.len() >= received
            },
        );
        eprintln!(
            "without a buffer: {received} received, {} in Kafka of {N}",
            distinct.len()
        );
        N - distinct.len()
    };
    assert!(
        lost > 1_000,
        "the broker dropped messages without a buffer: {lost} lost"
    );

    // With a disk buffer, and a SIGKILL halfway.
    let broker = mosquitto_default_queue();
    let kafka = KafkaUnderTest::start().await;
    let topic = unique("buffered");
    create_topic(&kafka.bootstrap(), &topic, PARTITIONS).await;
    let admin = free_port();
    let text = config(
        broker.port,
        &kafka.bootstrap(),
        &topic,
        Some("256MiB"),
        admin,
    )
    .text();
    let mut bridge = Bridge::start(&text);
    bridge.wait_subscribed(0, 1);
    let mut publisher = Publisher::connect(broker.port).await;
    kafka.proxy.cut();
    publish_paced(&mut publisher, 0..HALF).await;
    let buffered = bridge.wait_metric(admin, WRITTEN, HALF as f64, Duration::from_secs(30));
    assert!(buffered.await, "{}", bridge.log_text());
    bridge.kill();
    bridge.spawn();
    bridge.wait_subscribed(1, 1);
    publish_paced(&mut publisher, HALF..N).await;
    let buffered = bridge.wait_metric(admin, WRITTEN, HALF as f64, Duration::from_secs(30));
    assert!(buffered.await, "{}", bridge.log_text());
    // Both halves are in the buffer: the first survived the kill.
    let held = bridge.wait_metric(
        admin,
        "mqbridge_buffer_messages",
        N as f64,
        Duration::from_secs(10),
    );
    assert!(held.await, "{}", bridge.log_text());
    assert!(bridge.log_text().contains("disk buffer opened"));

    kafka.proxy.restore();
    let duplicates = all_arrived(&kafka.bootstrap(), &topic, PARTITIONS, N, || {
        bridge.log_text()
    });
    let records = read_all(
        &kafka.bootstrap(),
        &topic,
        PARTITIONS,
        Duration::from_secs(60),
        |r| r.len() >= N + duplicates,
    );
    assert_first_arrivals_in_order(&records);
    let start = std::time::Instant::now();
    while bridge.metric(admin, "mqbridge_buffer_messages").await > 0.0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the buffer empties once delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("with a disk buffer: {N} of {N} in Kafka, {duplicates} duplicates");
}
