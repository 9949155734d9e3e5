//! Fault tests: what the bridge does when Kafka goes away, when the bridge itself is killed,
//! and how much memory it holds while it cannot deliver. Each publishes numbered QoS 1
//! messages and then checks every number in Kafka: duplicates are allowed (and counted), losses
//! are not.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::config::{Config, Connection, Route};
use common::kafka::{all_arrived, create_topic, read_all};
use common::mqtt::Publisher;
use common::{free_port, mosquitto, unique, Bridge, KafkaUnderTest};

const PARTITIONS: i32 = 3;

/// The Kafka connection to `bootstrap`, reconnecting quickly (with librdkafka's `debug` set
/// from `MQBRIDGE_TEST_KAFKA_DEBUG`).
fn kafka_connection(bootstrap: &str) -> Connection {
    let kafka = Connection::kafka(bootstrap)
        .librdkafka("linger.ms", "5")
        .librdkafka("reconnect.backoff.max.ms", "500");
    match std::env::var("MQBRIDGE_TEST_KAFKA_DEBUG") {
        Ok(debug) => kafka.librdkafka("debug", &debug),
        Err(_) => kafka,
    }
}

/// The route "load": `load/#` to the Kafka `topic`, with two consumers.
fn load_route(topic: &str) -> Route {
    Route::new("load", "load/#", "kafka")
        .set("consumers", 2)
        .set("topic", topic)
}

/// `[mqtt]` on the broker at 127.0.0.1:`mqtt_port`, `kafka` as the connection `kafka`, `route`,
/// the dead-letter file and the admin API on `admin_port`.
fn config(mqtt_port: u16, kafka: Connection, route: Route, admin_port: u16) -> Config {
    Config::new(mqtt_port, "faults")
        .connection("kafka", kafka)
        .route(route)
        .dead_letter("dead.jsonl")
        .admin(admin_port)
}

/// An outage shorter than the delivery timeout: librdkafka holds and resends the records itself
/// (the idempotent producer neither loses nor repeats one), the bridge holds the MQTT acks.
#[tokio::test]
async fn kafka_outage_loses_nothing() {
    let o = outage(|kafka| kafka).await;
    assert_eq!(
        o.delivered_during, 0.0,
        "the outage was real: nothing was delivered while Kafka was cut"
    );
    assert_eq!(o.retries, 0.0, "librdkafka rode out the outage by itself");
    assert_eq!(
        o.duplicates, 0,
        "an idempotent producer writes each record once"
    );
}

/// librdkafka times the messages out locally during the outage: the bridge produces them again,
/// replacing the producer if the broker no longer accepts its producer id.
#[tokio::test]
async fn kafka_outage_longer_than_the_delivery_timeout_loses_nothing() {
    let o = outage(|kafka| kafka.set("delivery_timeout", "2s")).await;
    assert_eq!(o.delivered_during, 0.0, "the outage was real");
    assert!(
        o.timeouts > 0.0,
        "deliveries timed out and the bridge retried them"
    );
    // tansu fences a producer whose epoch librdkafka bumped after local timeouts.
    assert!(o.replaced >= 1.0, "the fenced producer was replaced");
    assert!(
        o.duplicates as f64 <= o.retries,
        "{} duplicates, but only {} retries could make them",
        o.duplicates,
        o.retries
    );
}

/// What an outage test saw.
struct Outage {
    /// Messages delivered between one second into the cut and its end.
    delivered_during: f64,
    retries: f64,
    timeouts: f64,
    replaced: f64,
    duplicates: usize,
}

/// `connection` sets what the Kafka connection has beyond [`kafka_connection`].
async fn outage(connection: impl FnOnce(Connection) -> Connection) -> Outage {
    const N: usize = 10_000;
    let broker = mosquitto();
    let kafka = KafkaUnderTest::start().await;
    let topic = unique("outage");
    create_topic(&kafka.bootstrap(), &topic, PARTITIONS).await;
    let admin = free_port();
    let bridge = Bridge::start(
        &config(
            broker.port,
            connection(kafka_connection(&kafka.bootstrap())),
            load_route(&topic),
            admin,
        )
        .text(),
    );
    bridge.wait_subscribed(0, 2);

    let mut publisher = Publisher::connect(broker.port).await;
    let topic_of = |i: usize| format!("load/{}", i % 10);
    publisher.publish_numbered(0..2_000, topic_of).await;
    publisher.wait_acked(Duration::from_secs(30)).await;
    const DELIVERED: &str = "mqbridge_messages_delivered_total";
    let delivered = bridge.wait_metric(admin, DELIVERED, 2_000.0, Duration::from_secs(30));
    assert!(delivered.await, "{}", bridge.log_text());
    kafka.proxy.cut();
    let outage = Instant::now();
    publisher.publish_numbered(2_000..7_000, topic_of).await;
    publisher.wait_acked(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1).saturating_sub(outage.elapsed())).await;
    let delivered_at_cut = bridge.metric(admin, DELIVERED).await;
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(outage.elapsed())).await;
    let delivered_during = bridge.metric(admin, DELIVERED).await - delivered_at_cut;
    kafka.proxy.restore();
    publisher.publish_numbered(7_000..N, topic_of).await;
    publisher.wait_acked(Duration::from_secs(30)).await;

    let duplicates = all_arrived(&kafka.bootstrap(), &topic, PARTITIONS, N, || {
        bridge.log_text()
    });
    const RETRIES: &str = "mqbridge_delivery_retries_total";
    let o = Outage {
        delivered_during,
        retries: bridge.metric(admin, RETRIES).await,
        timeouts: bridge
            .metric_where(admin, RETRIES, "error=\"timeout\"")
            .await,
        replaced: bridge
            .metric(admin, "mqbridge_producer_replacements_total")
            .await,
        duplicates,
    };
    eprintln!(
        "{} message retries ({} after a timeout), {} producer replacements, {} duplicates, \
         {} delivered during the outage",
        o.retries, o.timeouts, o.replaced, o.duplicates, o.delivered_during
    );
    o
}

#[tokio::test]
async fn bridge_kill_loses_nothing() {
    const N: usize = 10_000;
    let broker = mosquitto();
    let kafka = KafkaUnderTest::start().await;
    let topic = unique("kill");
    create_topic(&kafka.bootstrap(), &topic, PARTITIONS).await;
    let admin = free_port();
    let mut bridge = Bridge::start(
        &config(
            broker.port,
            kafka_connection(&kafka.bootstrap()),
            load_route(&topic),
            admin,
        )
        .text(),
    );
    bridge.wait_subscribed(0, 2);

    let mut publisher = Publisher::connect(broker.port).await;
    let topic_of = |i: usize| format!("load/{}", i % 10);
    publisher.publish_numbered(0..3_000, topic_of).await;
    // Kill while messages are in flight: some delivered, some not yet acknowledged.
    let delivered = bridge
        .wait_metric(
            admin,
            "mqbridge_messages_delivered_total",
            1_000.0,
            Duration::from_secs(30),
        )
        .await;
    assert!(
        delivered,
        "bridge delivered nothing:\n{}",
        bridge.log_text()
    );
    bridge.kill();
    publisher.publish_numbered(3_000..6_000, topic_of).await;
    publisher.wait_acked(Duration::from_secs(30)).await;
    let before = bridge.subscribed_count();
    bridge.spawn();
    bridge.wait_subscribed(before, 2);
    publisher.publish_numbered(6_000..N, topic_of).await;
    publisher.wait_acked(Duration::from_secs(30)).await;

    let duplicates = all_arrived(&kafka.bootstrap(), &topic, PARTITIONS, N, || {
        bridge.log_text()
    });
    // Only what the killed bridge had received and not acknowledged comes twice.
    assert!(
        duplicates <= 3_000,
        "{duplicates} duplicates: more than the bridge had received before the kill"
    );
}

#[tokio::test]
async fn backpressure_keeps_memory_bounded_and_loses_nothing() {
    const N: usize = 10_000;
    const WINDOW: usize = 64;
    let broker = mosquitto();
    let kafka = KafkaUnderTest::start().await;
    let topic = unique("pressure");
    create_topic(&kafka.bootstrap(), &topic, PARTITIONS).await;
    let admin = free_port();
    // A short keep-alive: the stall below lasts longer than 1.5 keep-alives, which the broker
    // would end by dropping a consumer that stopped talking while it waits for room.
    kafka.proxy.cut();
    let bridge = Bridge::start(
        &config(
            broker.port,
            kafka_connection(&kafka.bootstrap()),
            load_route(&topic),
            admin,
        )
        .mqtt("receive_maximum", WINDOW as i64)
        .mqtt("keep_alive", "5s")
        .text(),
    );
    bridge.wait_subscribed(0, 2);
    let rss_before = bridge.rss_kib();

    // 10,000 messages of 4 KiB: 40 MiB that the bridge must leave with the broker.
    let mut publisher = Publisher::connect(broker.port).await;
    let padding = "x".repeat(4096);
    for i in 0..N {
        publisher
            .publish(
                &format!("load/{}", i % 10),
                format!("msg-{i}|{padding}"),
                Default::default(),
            )
            .await;
    }
    publisher.wait_acked(Duration::from_secs(60)).await;
    let stalled = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_during = bridge.rss_kib();
    let received = bridge
        .metric(admin, "mqbridge_messages_received_total")
        .await as usize;
    eprintln!("RSS {rss_before} KiB before, {rss_during} KiB with Kafka unreachable; {received} messages taken in");
    assert!(
        received <= 2 * WINDOW,
        "took in {received} messages with a window of {WINDOW} per consumer"
    );
    assert!(
        rss_during < rss_before + 16 * 1024,
        "RSS grew from {rss_before} to {rss_during} KiB"
    );

    tokio::time::sleep(Duration::from_secs(10).saturating_sub(stalled.elapsed())).await;
    let log = bridge.log_text();
    assert!(
        !log.contains("consumer disconnected"),
        "a paused consumer lost its connection:\n{log}"
    );

    kafka.proxy.restore();
    let duplicates = all_arrived(&kafka.bootstrap(), &topic, PARTITIONS, N, || {
        bridge.log_text()
    });
    assert_eq!(duplicates, 0, "nothing reached Kafka before the restore");
}

#[tokio::test]
async fn shutdown_with_kafka_down_exits_in_time_and_loses_nothing() {
    const N: usize = 500;
    let broker = mosquitto();
    let kafka = KafkaUnderTest::start().await;
    let topic = unique("stop");
    create_topic(&kafka.bootstrap(), &topic, PARTITIONS).await;
    let text = config(
        broker.port,
        kafka_connection(&kafka.bootstrap()),
        load_route(&topic),
        free_port(),
    )
    .set("shutdown_timeout", "2s")
    .text();
    let mut bridge = Bridge::start(&text);
    bridge.wait_subscribed(0, 2);
    kafka.proxy.cut();
    let mut publisher = Publisher::connect(broker.port).await;
    publisher
        .publish_numbered(0..N, |i| format!("load/{}", i % 10))
        .await;
    publisher.wait_acked(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let asked = Instant::now();
    assert_eq!(
        bridge.stop(),
        Some(0),
        "exit code; log:\n{}",
        bridge.log_text()
    );
    let took = asked.elapsed();
    eprintln!("shutdown with Kafka down took {took:?}");
    assert!(
        took < Duration::from_secs(8),
        "shutdown took {took:?}; log:\n{}",
        bridge.log_text()
    );
    assert!(
        bridge.log_text().contains("shutdown timeout"),
        "{}",
        bridge.log_text()
    );

    kafka.proxy.restore();
    let before = bridge.subscribed_count();
    bridge.spawn();
    bridge.wait_subscribed(before, 2);
    let duplicates = all_arrived(&kafka.bootstrap(), &topic, PARTITIONS, N, || {
        bridge.log_text()
    });
    assert_eq!(duplicates, 0, "the stopped bridge delivered nothing");
}

/// Kafka cut several times mid-stream, some cuts longer than the delivery timeout, while 64
/// MQTT topics flow: the bridge retries what failed before anything later of the same topic,
/// so each topic's messages reach Kafka in their order, and none is lost.
#[tokio::test]
async fn transient_kafka_failures_keep_each_topics_order() {
    const TOPICS: usize = 64;
    const PER_TOPIC: usize = 250;
    const PARTITIONS: i32 = 4;
    // (ms from the start, ms cut): two cuts outlast the 1 s delivery timeout.
    const CUTS: [(u64, u64); 5] = [
        (500, 300),
        (1_500, 1_600),
        (3_600, 400),
        (4_600, 1_600),
        (6_500, 200),
    ];
    let broker = mosquitto();
    let kafka = KafkaUnderTest::start().await;
    let topic = unique("order");
    create_topic(&kafka.bootstrap(), &topic, PARTITIONS).await;
    let admin = free_port();
    let text = config(
        broker.port,
        kafka_connection(&kafka.bootstrap()).set("delivery_timeout", "1s"),
        load_route(&topic).filters(&["order/#"]),
        admin,
    )
    .text();
    let bridge = Bridge::start(&text);
    bridge.wait_subscribed(0, 2);

    let mut publisher = Publisher::connect(broker.port).await;
    let start = Instant::now();
    let mut cuts = CUTS.iter().peekable();
    let mut cut_until: Option<Instant> = None;
    for seq in 0..PER_TOPIC {
        for t in 0..TOPICS {
            let payload = format!("{t}:{seq}");
            publisher
                .publish(&format!("order/{t}"), payload, Default::default())
                .await;
        }
        let now = start.elapsed().as_millis() as u64;
        if cut_until.is_some_and(|u| Instant::now() >= u) {
            kafka.proxy.restore();
            cut_until = None;
        }
        if let Some(&&(at, ms)) = cuts.peek() {
            if now >= at && cut_until.is_none() {
                kafka.proxy.cut();
                cut_until = Some(Instant::now() + Duration::from_millis(ms));
                cuts.next();
            }
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    if let Some(until) = cut_until {
        tokio::time::sleep_until(until.into()).await;
        kafka.proxy.restore();
    }
    assert!(cuts.peek().is_none(), "the stream ended before every cut");
    publisher.wait_acked(Duration::from_secs(30)).await;

    let n = TOPICS * PER_TOPIC;
    let mut unique = HashSet::new();
    let records = read_all(
        &kafka.bootstrap(),
        &topic,
        PARTITIONS,
        Duration::from_secs(120),
        |r| {
            if let Some(last) = r.last() {
                unique.insert(common::kafka::text(last));
            }
            unique.len() >= n
        },
    );
    let mut per_topic: Vec<Vec<usize>> = vec![Vec::new(); TOPICS];
    for record in &records {
        let text = common::kafka::text(record);
        let (t, seq) = text.split_once(':').expect("payload t:seq");
        per_topic[t.parse::<usize>().unwrap()].push(seq.parse().unwrap());
    }
    for (t, seqs) in per_topic.iter().enumerate() {
        // Duplicates may come (a retried message that had made it); what counts is that each
        // message's first copy comes after the first copy of every earlier one.
        let mut seen = HashSet::new();
        let firsts: Vec<usize> = seqs.iter().copied().filter(|s| seen.insert(*s)).collect();
        assert_eq!(
            firsts,
            (0..PER_TOPIC).collect::<Vec<_>>(),
            "topic order/{t} arrived out of order or incomplete: {seqs:?}\nbridge log:\n{}",
            bridge.log_text()
        );
    }
    let duplicates = records.len() - n;
    let retries = bridge
        .metric(admin, "mqbridge_delivery_retries_total")
        .await;
    eprintln!("{n} messages, {duplicates} duplicates, {retries} message retries");
    assert!(
        retries > 0.0,
        "no delivery failed: the cuts did not test anything"
    );
    assert!(
        duplicates as f64 <= retries,
        "{duplicates} duplicates from {retries} retries"
    );
}
