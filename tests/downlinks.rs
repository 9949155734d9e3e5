//! Downlinks against real servers: RocketMQ (rocketmq-rust's name server and broker) and Kafka
//! (tansu) topics reaching MQTT v5 devices on mosquitto, with the templated topic and the
//! properties; the MQTT broker away for seconds, the bridge killed mid-stream, and a pause lose
//! nothing; unpublishable messages are dead-lettered and the stream goes on; two opposite routes
//! on the same topics do not echo.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use common::bridge::{cli, http_request};
use common::config::{Config, Connection, Downlink, Route};
use common::device::{Device, Received};
use common::function::{await_dead_letters, dead_letters};
use common::kafka::{create_topic, produce, producer};
use common::mqtt::Publisher;
use common::rocketmq::{send, Client, RocketmqUnderTest};
use common::{
    free_port, mosquitto, mosquitto_persistent, mosquitto_with, start_mosquitto, stop_mosquitto,
    unique, Bridge, KafkaUnderTest, Server,
};

/// `[mqtt]` on the broker at 127.0.0.1:`mqtt_port`, the admin API on `admin` and the
/// dead-letter file; the connection, routes and downlinks are the caller's.
fn config(mqtt_port: u16, admin: u16) -> Config {
    Config::new(mqtt_port, "dl")
        .admin(admin)
        .dead_letter("dead.jsonl")
}

/// [`config`] with the connection `kafka` to `bootstrap`.
fn kafka_config(mqtt_port: u16, admin: u16, bootstrap: &str) -> Config {
    config(mqtt_port, admin).connection("kafka", Connection::kafka(bootstrap))
}

/// [`config`] with the connection `rmq` to the name server `namesrv`.
fn rocketmq_config(mqtt_port: u16, admin: u16, namesrv: &str) -> Config {
    config(mqtt_port, admin).connection("rmq", Connection::rocketmq(namesrv))
}

fn topic_name(prefix: &str) -> String {
    unique(prefix).replace(['.', '/'], "_")
}

/// mosquitto (`broker`), tansu with a topic of `partitions`, a bridge with one downlink
/// "commands" from it to `chargers/{key}/commands` (with what `extra` sets), a device on
/// `chargers/+/commands` and a producer.
struct KafkaSetup {
    broker: Server,
    _kafka: KafkaUnderTest,
    topic: String,
    admin: u16,
    bridge: Bridge,
    device: Device,
    producer: rdkafka::producer::FutureProducer,
}

impl KafkaSetup {
    async fn start(
        broker: Server,
        partitions: i32,
        extra: impl FnOnce(Downlink) -> Downlink,
    ) -> Self {
        let kafka = KafkaUnderTest::start().await;
        let topic = topic_name("cmd");
        create_topic(&kafka.bootstrap(), &topic, partitions).await;
        let admin = free_port();
        let bridge = Bridge::start(
            &kafka_config(broker.port, admin, &kafka.bootstrap())
                .downlink(extra(Downlink::new(
                    "commands",
                    "kafka",
                    &topic,
                    "chargers/{key}/commands",
                )))
                .text(),
        );
        let device = Device::connect(broker.port, "chargers/+/commands").await;
        let producer = producer(&kafka.bootstrap());
        KafkaSetup {
            broker,
            _kafka: kafka,
            topic,
            admin,
            bridge,
            device,
            producer,
        }
    }
}

/// mosquitto, a RocketMQ name server and broker with a topic of `queues`, a bridge with one
/// downlink "commands" from it to `mqtt_topic`, a device on `filter` and a producer.
struct RocketmqSetup {
    _broker: Server,
    _rq: RocketmqUnderTest,
    /// The runtime the producer runs on.
    _client: Client,
    topic: String,
    admin: u16,
    bridge: Bridge,
    device: Device,
    producer: rocketmq_client_rust::DefaultMQProducer,
}

impl RocketmqSetup {
    async fn start(queues: i32, mqtt_topic: &str, filter: &str) -> Self {
        let broker = mosquitto();
        let rq = RocketmqUnderTest::start();
        let client = Client::new();
        let topic = topic_name("cmd");
        client.create_topic(&rq.namesrv(), &topic, queues).await;
        let admin = free_port();
        let bridge = Bridge::start(
            &rocketmq_config(broker.port, admin, &rq.namesrv())
                .downlink(Downlink::new("commands", "rmq", &topic, mqtt_topic))
                .text(),
        );
        let device = Device::connect(broker.port, filter).await;
        let producer = client.producer(&rq.namesrv()).await;
        RocketmqSetup {
            _broker: broker,
            _rq: rq,
            _client: client,
            topic,
            admin,
            bridge,
            device,
            producer,
        }
    }
}

/// The numbers `n-{i}` among what arrived, and how many copies of each.
fn numbers(received: &[Received]) -> HashMap<usize, usize> {
    let mut seen = HashMap::new();
    for r in received {
        if let Some(n) = r.text().strip_prefix("n-").and_then(|n| n.parse().ok()) {
            *seen.entry(n).or_insert(0) += 1;
        }
    }
    seen
}

fn missing(received: &[Received], n: usize) -> Vec<usize> {
    let seen = numbers(received);
    (0..n).filter(|i| !seen.contains_key(i)).collect()
}

/// Waits up to 90 s for every `n-{i}`, i < `n`, asserts that none is missing, and returns
/// what arrived.
async fn all_arrive(device: &Device, n: usize, bridge: &Bridge) -> Vec<Received> {
    let got = device
        .wait(Duration::from_secs(90), |r| missing(r, n).is_empty())
        .await;
    assert!(
        missing(&got, n).is_empty(),
        "missing {:?}; log:\n{}",
        missing(&got, n),
        bridge.log_text()
    );
    got
}

/// The downlink's entry in `/routes`.
async fn downlink_status(admin: u16, name: &str) -> serde_json::Value {
    common::bridge::flow_status(admin, "downlinks", name).await
}

/// The downlink's entry once it holds nothing in flight.
async fn settled_status(admin: u16, name: &str) -> serde_json::Value {
    common::bridge::flow_settled(admin, "downlinks", name).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocketmq_messages_reach_devices_in_order_with_their_properties() {
    // One queue: the whole topic is one source order.
    let RocketmqSetup {
        _broker,
        _rq,
        _client,
        topic,
        admin,
        bridge,
        device,
        producer,
    } = RocketmqSetup::start(
        1,
        "chargers/{property.deviceId}/commands/{tag}",
        "chargers/#",
    )
    .await;
    for i in 0..40 {
        let device_id = format!("P-{}", i % 4);
        let tag = if i % 2 == 0 { "start" } else { "stop" };
        let props = [
            ("deviceId", device_id.as_str()),
            ("site", "north"),
            ("mqtt_content_type", "application/json"),
            ("mqtt_correlation_data", "AQL/"),
            ("mqtt_response_topic", "replies/ops"),
        ];
        send(
            &producer,
            &topic,
            tag,
            &format!("k-{i}"),
            &props,
            &format!("n-{i}"),
        )
        .await;
        if i == 20 {
            // No deviceId: no topic to publish it to.
            send(&producer, &topic, "start", "k-x", &[], "no-device").await;
        }
    }
    let got = device
        .wait(Duration::from_secs(60), |r| r.len() >= 40)
        .await;
    assert_eq!(
        got.len(),
        40,
        "every message once: {:?}",
        got.iter().map(Received::text).collect::<Vec<_>>()
    );
    let order: Vec<String> = got.iter().map(Received::text).collect();
    let sent: Vec<String> = (0..40).map(|i| format!("n-{i}")).collect();
    assert_eq!(order, sent, "published in the queue's order");
    for (i, r) in got.iter().enumerate() {
        let tag = if i % 2 == 0 { "start" } else { "stop" };
        assert_eq!(r.topic, format!("chargers/P-{}/commands/{tag}", i % 4));
        let p = &r.properties;
        assert_eq!(p.content_type.as_deref(), Some("application/json"));
        assert_eq!(p.response_topic.as_deref(), Some("replies/ops"));
        assert_eq!(p.correlation_data.as_deref(), Some(&[1u8, 2, 255][..]));
        assert_eq!(r.user("site"), Some("north"));
        assert_eq!(r.user("deviceId"), Some(format!("P-{}", i % 4).as_str()));
        assert!(r.user("mqbridge-origin").is_some(), "marked: {p:?}");
        assert!(r.user("mqtt_content_type").is_none());
        assert!(!r.retain);
    }
    let dead = await_dead_letters(&bridge.dir.join("dead.jsonl"), 1, Duration::from_secs(10)).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["route"], "commands");
    assert_eq!(dead[0]["error_kind"], "invalid_topic");
    assert!(
        dead[0]["error"].as_str().unwrap().contains("deviceId"),
        "{}",
        dead[0]
    );
    assert_eq!(dead[0]["message"]["topic"], format!("rocketmq:{topic}"));
    let status = settled_status(admin, "commands").await;
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(status["in_flight"], 0, "{status}");
    assert_eq!(status["delivered"], 40, "{status}");
    assert_eq!(status["dead_lettered"], 1, "{status}");
    let published = bridge
        .metric_where(
            admin,
            "mqbridge_messages_delivered_total",
            "route=\"commands\"",
        )
        .await;
    assert_eq!(published, 40.0);
    drop(producer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_records_reach_devices_per_key_in_order_with_headers_and_expiry() {
    let KafkaSetup {
        broker,
        _kafka,
        topic,
        admin: _admin,
        bridge: _bridge,
        device,
        producer,
    } = KafkaSetup::start(mosquitto(), 3, |d| {
        d.set("message_expiry", "10m").set("retain", true)
    })
    .await;
    for i in 0..60 {
        let key = format!("P-{}", i % 5);
        let headers = [
            ("fw", "1"),
            ("fw", "2"),
            ("mqtt.content.type", "text/plain"),
            ("mqtt.topic", "uplink/metadata"),
        ];
        produce(&producer, &topic, Some(&key), &headers, &format!("n-{i}")).await;
    }
    let got = device
        .wait(Duration::from_secs(60), |r| numbers(r).len() >= 60)
        .await;
    assert!(
        missing(&got, 60).is_empty(),
        "missing {:?}",
        missing(&got, 60)
    );
    let mut per_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for r in &got {
        let n: usize = r.text()[2..].parse().unwrap();
        assert_eq!(r.topic, format!("chargers/P-{}/commands", n % 5));
        per_key.entry(r.topic.clone()).or_default().push(n);
        let p = &r.properties;
        assert_eq!(p.content_type.as_deref(), Some("text/plain"));
        let fw: Vec<&str> = p
            .user_properties
            .iter()
            .filter(|(k, _)| k == "fw")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(fw, ["1", "2"], "headers kept in order with repeats");
        assert!(
            r.user("mqtt.topic").is_none(),
            "the uplink's metadata is not carried"
        );
        let expiry = p.message_expiry_interval.expect("message expiry set");
        assert!((590..=600).contains(&expiry), "{expiry}");
        assert!(r.user("mqbridge-origin").is_some());
    }
    for (key, ns) in &per_key {
        let mut sorted = ns.clone();
        sorted.sort();
        assert_eq!(ns, &sorted, "{key}: in the partition's order");
    }
    // Retained: a device that subscribes later gets the last command of each pile.
    let late = Device::connect(broker.port, "chargers/+/commands").await;
    let retained = late.wait(Duration::from_secs(5), |r| r.len() >= 5).await;
    assert_eq!(retained.len(), 5);
    assert!(retained.iter().all(|r| r.retain));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mqtt_broker_down_for_seconds_loses_nothing() {
    let KafkaSetup {
        mut broker,
        _kafka,
        topic,
        admin,
        bridge,
        device,
        producer,
    } = KafkaSetup::start(mosquitto_persistent(), 2, |d| d).await;
    let n = 300;
    let writer = {
        let topic = topic.clone();
        tokio::spawn(async move {
            for i in 0..n {
                let key = format!("P-{}", i % 7);
                produce(&producer, &topic, Some(&key), &[], &format!("n-{i}")).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    device
        .wait(Duration::from_secs(30), |r| r.len() >= 50)
        .await;
    // The broker stops (saving its sessions) and stays away for 5 s mid-stream.
    stop_mosquitto(&mut broker);
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    start_mosquitto(&mut broker);
    eprintln!("broker away for {:?}", down.elapsed());
    writer.await.unwrap();
    all_arrive(&device, n, &bridge).await;
    let retries = bridge
        .metric(admin, "mqbridge_delivery_retries_total")
        .await;
    assert!(retries > 0.0, "publishes failed while the broker was away");
    assert!(dead_letters(&bridge.dir.join("dead.jsonl")).is_empty());
    let status = downlink_status(admin, "commands").await;
    assert_eq!(status["state"], "running", "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_killed_mid_stream_loses_nothing_and_goes_on_from_its_offsets() {
    let RocketmqSetup {
        _broker,
        _rq: rq,
        _client: client,
        topic,
        admin: _,
        mut bridge,
        device,
        producer,
    } = RocketmqSetup::start(2, "chargers/{key}/commands", "chargers/+/commands").await;
    let n = 400;
    for i in 0..200 {
        send(
            &producer,
            &topic,
            "cmd",
            &format!("P-{}", i % 4),
            &[],
            &format!("n-{i}"),
        )
        .await;
    }
    device
        .wait(Duration::from_secs(60), |r| missing(r, 200).is_empty())
        .await;
    // The broker holds the group's offsets past all 200 (the bridge sends them at most a
    // second after their last acknowledgement).
    let start = std::time::Instant::now();
    let mut committed = None;
    while committed != Some(200) && start.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        committed = client
            .committed(&rq.namesrv(), "mqbridge-commands", &topic)
            .await;
    }
    assert_eq!(committed, Some(200), "offsets committed on the broker");
    let writer = {
        let topic = topic.clone();
        tokio::spawn(async move {
            for i in 200..n {
                send(
                    &producer,
                    &topic,
                    "cmd",
                    &format!("P-{}", i % 4),
                    &[],
                    &format!("n-{i}"),
                )
                .await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    device
        .wait(Duration::from_secs(60), |r| r.len() >= 260)
        .await;
    bridge.kill();
    let at_kill = device.count();
    bridge.spawn();
    writer.await.unwrap();
    let got = all_arrive(&device, n, &bridge).await;
    let copies = numbers(&got);
    let again: Vec<usize> = (0..n).filter(|i| copies[i] > 1).collect();
    eprintln!(
        "{at_kill} received when killed, {} in all, {} published twice",
        got.len(),
        again.len()
    );
    // At least once, going on from the committed offsets: what was committed before is not
    // published again.
    assert!(
        again.iter().all(|i| *i >= 200),
        "published again: {again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_lose_nothing() {
    let broker = mosquitto();
    let kafka = KafkaUnderTest::start().await;
    let topic = topic_name("cmd");
    let witness = topic_name("wit");
    create_topic(&kafka.bootstrap(), &topic, 2).await;
    create_topic(&kafka.bootstrap(), &witness, 1).await;
    let admin = free_port();
    // `witness` runs beside `commands` and proves that the bridge reads and publishes what is
    // produced while `commands` is paused.
    let bridge = Bridge::start(
        &kafka_config(broker.port, admin, &kafka.bootstrap())
            .downlink(Downlink::new(
                "commands",
                "kafka",
                &topic,
                "chargers/{key}/commands",
            ))
            .downlink(Downlink::new(
                "witness",
                "kafka",
                &witness,
                "chargers/witness/commands",
            ))
            .text(),
    );
    let device = Device::connect(broker.port, "chargers/+/commands").await;
    let producer = producer(&kafka.bootstrap());
    for i in 0..50 {
        produce(&producer, &topic, Some("P-1"), &[], &format!("n-{i}")).await;
    }
    device
        .wait(Duration::from_secs(60), |r| r.len() >= 50)
        .await;
    let (code, body) = http_request(admin, "POST", "/routes/commands/pause", None).await;
    assert_eq!(code, 200, "{body}");
    let paused: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(paused["state"], "paused", "{paused}");
    // Produced a second after the pause was answered, while the idle downlink waits in a poll:
    // nothing of it may be published before resume.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 50..150 {
        produce(
            &producer,
            &topic,
            Some(&format!("P-{}", i % 3)),
            &[],
            &format!("n-{i}"),
        )
        .await;
    }
    produce(&producer, &witness, None, &[], "witnessed").await;
    let got = device
        .wait(Duration::from_secs(60), |r| {
            r.iter().any(|m| m.text() == "witnessed")
        })
        .await;
    assert!(
        got.iter().any(|m| m.text() == "witnessed"),
        "the witness downlink published nothing; log:\n{}",
        bridge.log_text()
    );
    assert_eq!(got.len(), 51, "nothing published while paused");
    assert_eq!(downlink_status(admin, "commands").await["state"], "paused");
    let paused = "mqbridge_route_paused";
    assert_eq!(
        bridge
            .metric_where(admin, paused, "route=\"commands\"")
            .await,
        1.0
    );
    let (code, body) = http_request(admin, "POST", "/routes/commands/resume", None).await;
    assert_eq!(code, 200, "{body}");
    let got = all_arrive(&device, 150, &bridge).await;
    assert!(numbers(&got).values().all(|&c| c == 1), "each once");
    assert_eq!(got.len(), 151);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpublishable_messages_are_dead_lettered_and_the_stream_goes_on() {
    // A broker that takes packets of at most 20,000 bytes.
    let KafkaSetup {
        broker: _broker,
        _kafka,
        topic,
        admin: _admin,
        bridge,
        device,
        producer,
    } = KafkaSetup::start(
        mosquitto_with("persistence false\nmax_packet_size 20000\n"),
        1,
        |d| d,
    )
    .await;
    produce(&producer, &topic, Some("P-1"), &[], "n-0").await;
    produce(&producer, &topic, None, &[], "no-key").await;
    produce(&producer, &topic, Some("P-1"), &[], &"x".repeat(30_000)).await;
    produce(&producer, &topic, Some("a/+"), &[], "wildcard-key").await;
    // A control character: mosquitto closes a connection over one in a topic.
    produce(&producer, &topic, Some("P-\u{7}1"), &[], "control-key").await;
    // ... and in a user property, where it is replaced.
    produce(
        &producer,
        &topic,
        Some("P-1"),
        &[("note", "a\u{1}b")],
        "n-1",
    )
    .await;
    let got = device.wait(Duration::from_secs(60), |r| r.len() >= 2).await;
    let texts: Vec<String> = got.iter().map(Received::text).collect();
    assert_eq!(texts, ["n-0", "n-1"]);
    assert_eq!(got[1].user("note"), Some("a\u{fffd}b"));
    let dead = await_dead_letters(&bridge.dir.join("dead.jsonl"), 4, Duration::from_secs(10)).await;
    let kinds: Vec<&str> = dead
        .iter()
        .map(|d| d["error_kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "invalid_topic",
            "too_large",
            "invalid_topic",
            "invalid_topic"
        ],
        "{dead:?}"
    );
    assert!(
        dead[1]["error"].as_str().unwrap().contains("20000"),
        "{}",
        dead[1]
    );
    let offsets: Vec<&str> = dead
        .iter()
        .map(|d| {
            d["message"]["user_properties"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p[0] == "source.offset")
                .and_then(|p| p[1].as_str())
                .unwrap()
        })
        .collect();
    assert_eq!(offsets, ["1", "2", "3", "4"]);
    assert!(
        !bridge.log_text().contains("MQTT publisher disconnected"),
        "the large message did not cost the connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opposite_routes_on_the_same_topics_do_not_echo() {
    let broker = mosquitto();
    let kafka = KafkaUnderTest::start().await;
    let topic = topic_name("cmd");
    create_topic(&kafka.bootstrap(), &topic, 1).await;
    let admin = free_port();
    // Up: devices/+/cmd → Kafka; down: the same Kafka topic → devices/{key}/cmd.
    let bridge = Bridge::start(
        &kafka_config(broker.port, admin, &kafka.bootstrap())
            .route(
                Route::new("up", "devices/+/cmd", "kafka")
                    .set("topic", topic.as_str())
                    .set("key", "{topic.2}"),
            )
            .downlink(Downlink::new("down", "kafka", &topic, "devices/{key}/cmd"))
            .text(),
    );
    bridge.wait_subscribed(0, 1);
    let device = Device::connect(broker.port, "devices/+/cmd").await;
    let mut publisher = Publisher::connect(broker.port).await;
    for i in 0..10 {
        publisher
            .publish(
                &format!("devices/D-{i}/cmd"),
                format!("n-{i}"),
                Default::default(),
            )
            .await;
    }
    publisher.wait_acked(Duration::from_secs(10)).await;
    // Each message: once from the publisher, once back from Kafka, then no more.
    let got = device
        .wait(Duration::from_secs(60), |r| r.len() >= 20)
        .await;
    assert_eq!(got.len(), 20);
    assert!(
        bridge
            .wait_metric(
                admin,
                "mqbridge_messages_skipped_total",
                10.0,
                Duration::from_secs(20)
            )
            .await,
        "the uplink skipped the 10 it published itself"
    );
    // Every message the uplink took is accounted for: the 10 published, delivered; the 10
    // copies, skipped. None of the copies went back to Kafka, so none can come down again.
    assert_eq!(
        bridge
            .metric(admin, "mqbridge_messages_skipped_total")
            .await,
        10.0
    );
    assert_eq!(
        bridge
            .metric_where(admin, "mqbridge_messages_received_total", "route=\"up\"")
            .await,
        20.0
    );
    assert_eq!(
        bridge
            .metric_where(admin, "mqbridge_messages_delivered_total", "route=\"up\"")
            .await,
        10.0
    );
    assert_eq!(device.count(), 20, "no echo");
    let records =
        common::kafka::read_all(&kafka.bootstrap(), &topic, 1, Duration::from_secs(5), |r| {
            r.len() > 10
        });
    assert_eq!(records.len(), 10, "Kafka holds each message once");
    let marked: HashSet<&str> = got
        .iter()
        .filter_map(|r| r.user("mqbridge-origin"))
        .collect();
    assert_eq!(marked.len(), 1, "the downlinked copies carry the marker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_a_downlink_and_leaves_the_running_one_alone() {
    let broker = mosquitto();
    let kafka = KafkaUnderTest::start().await;
    let (first, second) = (topic_name("cmd"), topic_name("cfg"));
    create_topic(&kafka.bootstrap(), &first, 1).await;
    create_topic(&kafka.bootstrap(), &second, 1).await;
    let admin = free_port();
    let commands = kafka_config(broker.port, admin, &kafka.bootstrap()).downlink(Downlink::new(
        "commands",
        "kafka",
        &first,
        "chargers/{key}/commands",
    ));
    let bridge = Bridge::start(&commands.text());
    let device = Device::connect(broker.port, "chargers/#").await;
    let producer = producer(&kafka.bootstrap());
    produce(&producer, &first, Some("P-1"), &[], "n-0").await;
    device
        .wait(Duration::from_secs(60), |r| !r.is_empty())
        .await;
    // The same file (the same client id prefix) with one downlink more after `commands`.
    let added = commands.downlink(Downlink::new(
        "settings",
        "kafka",
        &second,
        "chargers/{key}/settings",
    ));
    std::fs::write(&bridge.config, added.text()).unwrap();
    let (code, body) = http_request(admin, "POST", "/reload", None).await;
    assert_eq!(code, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["added"], serde_json::json!(["settings"]), "{report}");
    assert_eq!(
        report["unchanged"],
        serde_json::json!(["commands"]),
        "{report}"
    );
    produce(&producer, &second, Some("P-1"), &[], "n-1").await;
    produce(&producer, &first, Some("P-1"), &[], "n-2").await;
    let got = device
        .wait(Duration::from_secs(60), |r| missing(r, 3).is_empty())
        .await;
    let topics: HashSet<&str> = got.iter().map(|r| r.topic.as_str()).collect();
    assert!(topics.contains("chargers/P-1/settings"), "{topics:?}");
    assert_eq!(got.len(), 3, "each once");
    assert_eq!(downlink_status(admin, "settings").await["state"], "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reads_each_downlinks_source_topic() {
    let broker = mosquitto();
    let rq = RocketmqUnderTest::start();
    let client = Client::new();
    let topic = topic_name("cmd");
    client.create_topic(&rq.namesrv(), &topic, 3).await;
    let text = rocketmq_config(broker.port, free_port(), &rq.namesrv())
        .downlink(Downlink::new(
            "commands",
            "rmq",
            &topic,
            "chargers/{key}/commands",
        ))
        .text();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    std::fs::write(&path, text).unwrap();
    let (code, text) = cli(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("downlink \"commands\""))
        .expect(&text);
    assert!(
        line.starts_with("ok") && line.contains("3 queue(s)"),
        "{text}"
    );
}

/// A downlink's rules: a `where` on a header commits without publishing, a `transform`
/// reshapes the command and picks its MQTT topic per message, a failing one dead-letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downlinks_rules_filter_reshape_and_route_each_command() {
    let transform = r#"
        .payload = { "cmd": .payload.cmd, "pile": .key }
        .destination.topic = "chargers/" + string!(.key) + "/" + string!(.payload.cmd)
    "#;
    let KafkaSetup {
        broker,
        _kafka,
        topic,
        admin,
        bridge,
        device: _,
        producer,
    } = KafkaSetup::start(mosquitto(), 1, |d| {
        d.set("where", r#".properties.test != "yes""#)
            .set("transform", transform)
    })
    .await;
    let wildcard = Device::connect(broker.port, "chargers/#").await;
    let commands = ["start", "stop", "start", "reset"];
    for (i, cmd) in commands.iter().enumerate() {
        let key = format!("P-{i}");
        let payload = format!(r#"{{"cmd": "{cmd}", "extra": {i}}}"#);
        produce(&producer, &topic, Some(&key), &[], &payload).await;
        // A test command: committed, not published.
        produce(&producer, &topic, Some(&key), &[("test", "yes")], &payload).await;
    }
    // No key: `.key` is missing and the transform fails on it.
    produce(&producer, &topic, None, &[], r#"{"cmd": "start"}"#).await;
    let got = wildcard
        .wait(Duration::from_secs(60), |r| r.len() >= 4)
        .await;
    let topics: Vec<&str> = got.iter().map(|r| r.topic.as_str()).collect();
    assert_eq!(
        topics,
        [
            "chargers/P-0/start",
            "chargers/P-1/stop",
            "chargers/P-2/start",
            "chargers/P-3/reset"
        ]
    );
    let payload: serde_json::Value = serde_json::from_str(&got[1].text()).unwrap();
    assert_eq!(payload, serde_json::json!({"cmd": "stop", "pile": "P-1"}));
    assert!(
        bridge
            .wait_metric(
                admin,
                "mqbridge_messages_filtered_total",
                4.0,
                Duration::from_secs(20)
            )
            .await
    );
    let dead = await_dead_letters(&bridge.dir.join("dead.jsonl"), 1, Duration::from_secs(20)).await;
    assert_eq!(dead[0]["error_kind"], "transform_error", "{dead:?}");
    let status = settled_status(admin, "commands").await;
    assert_eq!(status["in_flight"], 0, "{status}");
    assert_eq!(status["filtered"], 4, "{status}");
    assert_eq!(status["delivered"], 4, "{status}");
}
