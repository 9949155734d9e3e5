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
        publisher.publish_spread(0..N, topic_of, 250).await;
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
    publisher.publish_spread(0..HALF, topic_of, 250).await;
    let buffered = bridge.wait_metric(admin, WRITTEN, HALF as f64, Duration::from_secs(30));
    assert!(buffered.await, "{}", bridge.log_text());
    bridge.kill();
    bridge.spawn();
    bridge.wait_subscribed(1, 1);
    publisher.publish_spread(HALF..N, topic_of, 250).await;
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

/// The route to the Kafka `topic` with a disk buffer of `max_size` under `data_dir`, on a
/// broker that queues without limit (so that what the route does not read waits there).
fn buffered(mqtt_port: u16, bootstrap: &str, topic: &str, max_size: &str, admin: u16) -> Config {
    config(mqtt_port, bootstrap, topic, Some(max_size), admin)
}

/// A buffer that fills stops the route reading (the broker keeps the rest) and says so; when
/// Kafka is back, everything arrives and the buffer has room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_stops_reading_and_resumes_losing_nothing() {
    const N: usize = 10_000;
    let broker = common::mosquitto();
    let kafka = KafkaUnderTest::start().await;
    let topic = unique("full");
    create_topic(&kafka.bootstrap(), &topic, PARTITIONS).await;
    let admin = free_port();
    let bridge =
        Bridge::start(&buffered(broker.port, &kafka.bootstrap(), &topic, "128KiB", admin).text());
    bridge.wait_subscribed(0, 1);
    let mut publisher = Publisher::connect(broker.port).await;
    kafka.proxy.cut();
    publisher.publish_numbered(0..N, topic_of).await;
    publisher.wait_acked(Duration::from_secs(60)).await;
    let full = bridge.wait_metric(admin, "mqbridge_buffer_full", 1.0, Duration::from_secs(30));
    assert!(full.await, "{}", bridge.log_text());
    assert!(bridge.log_text().contains("the disk buffer is full"));
    let written = bridge.metric(admin, "mqbridge_buffer_written_total").await;
    assert!(
        written < N as f64,
        "the route stopped reading: {written} written"
    );
    // Held within its size, give or take the batches in the write when it filled.
    let bytes = bridge.metric(admin, "mqbridge_buffer_bytes").await;
    assert!(
        bytes <= (128 * 1024 + 4 * 500 * 80) as f64,
        "{bytes} bytes buffered"
    );

    kafka.proxy.restore();
    all_arrived(&kafka.bootstrap(), &topic, PARTITIONS, N, || {
        bridge.log_text()
    });
    let start = std::time::Instant::now();
    while bridge.metric(admin, "mqbridge_buffer_full").await > 0.0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            bridge.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(bridge.log_text().contains("the disk buffer has room again"));
}

/// A value in the buffer that does not read back is reported, counted and set aside; the
/// messages before and after it are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_value_is_reported_and_the_rest_delivered() {
    const N: usize = 200;
    let broker = common::mosquitto();
    let kafka = KafkaUnderTest::start().await;
    let topic = unique("damaged");
    create_topic(&kafka.bootstrap(), &topic, PARTITIONS).await;
    let admin = free_port();
    // The stop below gives up on the sends to the cut Kafka after 2 s; what they held stays in
    // the buffer.
    let text = buffered(broker.port, &kafka.bootstrap(), &topic, "64MiB", admin)
        .set("shutdown_timeout", "2s")
        .text();
    let mut bridge = Bridge::start(&text);
    bridge.wait_subscribed(0, 1);
    let mut publisher = Publisher::connect(broker.port).await;
    kafka.proxy.cut();
    publisher.publish_numbered(0..N / 2, topic_of).await;
    publisher.wait_acked(Duration::from_secs(30)).await;
    let buffered = bridge.wait_metric(
        admin,
        "mqbridge_buffer_written_total",
        (N / 2) as f64,
        Duration::from_secs(30),
    );
    assert!(buffered.await, "{}", bridge.log_text());
    assert!(bridge.stop().is_some());

    // A write torn by a power cut: a value whose bytes are not what was written.
    let path = bridge.dir.join("data/buffers/load.redb");
    {
        let store = mqbridge::buffer::Store::open(&path, 64 << 20).unwrap();
        store
            .append(&[b"\x01\x02\x03 not a message".to_vec()])
            .unwrap();
    }
    bridge.spawn();
    bridge.wait_subscribed(1, 1);
    publisher.publish_numbered(N / 2..N, topic_of).await;
    publisher.wait_acked(Duration::from_secs(30)).await;
    kafka.proxy.restore();
    all_arrived(&kafka.bootstrap(), &topic, PARTITIONS, N, || {
        bridge.log_text()
    });
    let damaged = bridge.wait_metric(
        admin,
        "mqbridge_buffer_damaged_total",
        1.0,
        Duration::from_secs(10),
    );
    assert!(damaged.await, "{}", bridge.log_text());
    let log = bridge.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("cannot be read back"))
        .expect("an ERROR line for the damaged value");
    assert!(
        line.contains("ERROR") && line.contains("route=\"load\""),
        "{line}"
    );
}

/// A disk too small for the backlog: writes fail with a clear error and a metric, the route
/// stops reading, the bridge stays up, and when Kafka is back everything arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_reading_with_a_clear_error_and_loses_nothing() {
    const N: usize = 20_000;
    let disk = SmallDisk::mount("1m");
    let broker = common::mosquitto();
    let kafka = KafkaUnderTest::start().await;
    let topic = unique("diskfull");
    create_topic(&kafka.bootstrap(), &topic, PARTITIONS).await;
    let admin = free_port();
    let text = buffered(broker.port, &kafka.bootstrap(), &topic, "1GiB", admin)
        .set("data_dir", disk.path.to_str().unwrap())
        .text();
    let bridge = Bridge::start(&text);
    bridge.wait_subscribed(0, 1);
    let mut publisher = Publisher::connect(broker.port).await;
    kafka.proxy.cut();
    publisher.publish_numbered(0..N, topic_of).await;
    publisher.wait_acked(Duration::from_secs(60)).await;
    let refused = bridge.wait_metric(
        admin,
        "mqbridge_buffer_write_errors_total",
        1.0,
        Duration::from_secs(30),
    );
    assert!(refused.await, "{}", bridge.log_text());
    let log = bridge.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("disk is full"))
        .expect("an ERROR line for the full disk");
    assert!(
        line.contains("ERROR") && line.contains("route=\"load\""),
        "{line}"
    );
    assert!(
        bridge
            .metric_where(
                admin,
                "mqbridge_buffer_write_errors_total",
                "error=\"disk_full\""
            )
            .await
            >= 1.0
    );

    kafka.proxy.restore();
    all_arrived(&kafka.bootstrap(), &topic, PARTITIONS, N, || {
        bridge.log_text()
    });
}

/// A tmpfs of a given size, unmounted when dropped.
struct SmallDisk {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a {size} tmpfs at {} (the tests run as root)",
            path.display()
        );
        SmallDisk { path, _dir: dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// A reload that restarts a route keeps what its disk buffer holds, and one that takes the
/// buffer away says where the messages stay; the route shows its buffer in `/routes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_what_the_buffer_holds() {
    const N: usize = 300;
    use common::bridge::{http_get, http_request};
    let broker = common::mosquitto();
    let kafka = KafkaUnderTest::start().await;
    let topic = unique("reload");
    create_topic(&kafka.bootstrap(), &topic, PARTITIONS).await;
    let admin = free_port();
    let config = |batch_size: i64, buffer: bool| {
        let mut route = Route::new("load", "load/#", "kafka")
            .set("consumers", 1)
            .set("topic", topic.as_str())
            .set("batch_size", batch_size);
        if buffer {
            route = route
                .set("buffer.type", "disk")
                .set("buffer.max_size", "64MiB");
        }
        Config::new(broker.port, "reload")
            .connection("kafka", kafka_connection(&kafka.bootstrap()))
            .route(route)
            .dead_letter("dead.jsonl")
            .admin(admin)
            .set("shutdown_timeout", "2s")
            .text()
    };
    let bridge = Bridge::start(&config(500, true));
    bridge.wait_subscribed(0, 1);
    let mut publisher = Publisher::connect(broker.port).await;
    kafka.proxy.cut();
    publisher.publish_numbered(0..N, topic_of).await;
    publisher.wait_acked(Duration::from_secs(30)).await;
    let written = bridge.wait_metric(
        admin,
        "mqbridge_buffer_written_total",
        N as f64,
        Duration::from_secs(30),
    );
    assert!(written.await, "{}", bridge.log_text());

    // Restarted with another batch size: the buffer's messages are still there.
    std::fs::write(&bridge.config, config(100, true)).unwrap();
    let (code, report) = http_request(admin, "POST", "/reload", None).await;
    assert_eq!(code, 200, "{report}");
    assert!(report.contains("load"), "{report}");
    let routes: serde_json::Value =
        serde_json::from_str(&http_get(admin, "/routes").await).unwrap();
    let buffer = &routes["routes"][0]["buffer"];
    assert_eq!(buffer["messages"], N, "{routes}");
    assert!(
        buffer["path"]
            .as_str()
            .unwrap()
            .ends_with("buffers/load.redb"),
        "{routes}"
    );

    // Without its buffer, the route delivers what arrives from now on, and the reload says
    // what the file keeps.
    std::fs::write(&bridge.config, config(100, false)).unwrap();
    let (code, report) = http_request(admin, "POST", "/reload", None).await;
    assert_eq!(code, 200, "{report}");
    assert!(
        report.contains(&format!("which holds {N} messages")),
        "{report}"
    );
    // With its buffer again, everything arrives once Kafka is back.
    std::fs::write(&bridge.config, config(50, true)).unwrap();
    assert_eq!(http_request(admin, "POST", "/reload", None).await.0, 200);
    kafka.proxy.restore();
    all_arrived(&kafka.bootstrap(), &topic, PARTITIONS, N, || {
        bridge.log_text()
    });
}
