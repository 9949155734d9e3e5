//! End to end through real servers: an MQTT v5 client publishes to mosquitto, the bridge
//! delivers to a Kafka-protocol broker (tansu), a Kafka consumer reads the records back.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::config::{Config, Connection, Route};
use common::function::await_dead_letters;
use common::kafka::{create_topic, headers, read_all, text};
use common::mqtt::Publisher;
use common::{mosquitto, unique, Bridge, KafkaUnderTest};
use rdkafka::Message;
use rumqttc::v5::mqttbytes::v5::PublishProperties;

/// The Kafka connection to `bootstrap`: zstd, a 1 ms linger.
fn kafka_connection(bootstrap: &str) -> Connection {
    Connection::kafka(bootstrap)
        .set("compression", "zstd")
        .librdkafka("linger.ms", "1")
}

/// `[mqtt]` on the broker at 127.0.0.1:`mqtt_port` (the publisher's client id taken from the
/// `source-client` user property) and `kafka` as the connection `kafka`, without a dead-letter
/// destination.
fn base_config(mqtt_port: u16, kafka: Connection) -> Config {
    Config::new(mqtt_port, "e2e")
        .mqtt("publisher.client_id_property", "source-client")
        .connection("kafka", kafka)
}

/// [`base_config`] with the dead-letter file `dead.jsonl`.
fn config(mqtt_port: u16, kafka: Connection) -> Config {
    base_config(mqtt_port, kafka).dead_letter("dead.jsonl")
}

#[tokio::test]
async fn records_carry_payload_key_and_every_header() {
    let broker = mosquitto();
    let kafka = KafkaUnderTest::start().await;
    let topic = unique("vehicles");
    create_topic(&kafka.bootstrap(), &topic, 1).await;
    let route = Route::new("traffic", "city/+/vehicles/#", "kafka")
        .set("topic", topic.as_str())
        .set("key", "{user.plate}");
    let bridge = Bridge::start(
        &config(broker.port, kafka_connection(&kafka.bootstrap()))
            .route(route)
            .text(),
    );
    bridge.wait_subscribed(0, 1);

    let mut publisher = Publisher::connect(broker.port).await;
    let props = PublishProperties {
        content_type: Some("application/json".into()),
        response_topic: Some("cars/B-AB-123/replies".into()),
        correlation_data: Some(Bytes::from_static(&[0, 1, 254, 255])),
        user_properties: vec![
            ("plate".into(), "B-AB-123".into()),
            ("source-client".into(), "car-17".into()),
            ("tag".into(), "a".into()),
            ("tag".into(), "b".into()),
        ],
        ..Default::default()
    };
    let payload = r#"{"speed_kmh":48.5}"#;
    publisher
        .publish("city/berlin/vehicles/B-AB-123", payload, props)
        .await;
    publisher.wait_acked(Duration::from_secs(5)).await;

    let records = read_all(
        &kafka.bootstrap(),
        &topic,
        1,
        Duration::from_secs(30),
        |r| !r.is_empty(),
    );
    assert_eq!(records.len(), 1, "bridge log:\n{}", bridge.log_text());
    let record = &records[0];
    assert_eq!(text(record), payload);
    assert_eq!(record.key(), Some(&b"B-AB-123"[..]));
    let h = headers(record);
    let get = |k: &str| {
        h.iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("mqtt.topic"), Some("city/berlin/vehicles/B-AB-123"));
    assert_eq!(get("mqtt.qos"), Some("1"));
    assert_eq!(get("mqtt.retained"), Some("false"));
    assert_eq!(get("mqtt.duplicate"), Some("false"));
    assert!(get("mqtt.packet.id").unwrap().parse::<u16>().unwrap() > 0);
    let id = uuid::Uuid::parse_str(get("mqtt.message.id").unwrap()).unwrap();
    assert_eq!(id.get_version_num(), 7);
    let ts: i64 = get("mqtt.timestamp").unwrap().parse().unwrap();
    assert_eq!(record.timestamp().to_millis(), Some(ts));
    assert!((ts - chrono_now_ms()).abs() < 60_000);
    assert_eq!(get("mqtt.content.type"), Some("application/json"));
    assert_eq!(get("mqtt.response.topic"), Some("cars/B-AB-123/replies"));
    assert_eq!(get("mqtt.correlation.data"), Some("AAH+/w=="));
    assert_eq!(get("mqtt.publisher.client.id"), Some("car-17"));
    assert_eq!(get("mqtt.publisher.username"), None);
    let user: Vec<_> = h
        .iter()
        .filter(|(k, _)| !k.starts_with("mqtt."))
        .cloned()
        .collect();
    let expected = [
        ("plate", "B-AB-123"),
        ("source-client", "car-17"),
        ("tag", "a"),
        ("tag", "b"),
    ];
    assert_eq!(user, expected.map(|(k, v)| (k.to_owned(), v.to_owned())));
}

#[tokio::test]
async fn refused_records_go_to_the_dead_letter_file_and_the_rest_flow() {
    let broker = mosquitto();
    let kafka = KafkaUnderTest::start().await;
    let good = unique("good");
    create_topic(&kafka.bootstrap(), &good, 1).await;
    // The topic template takes the second level: "ok" routes to the real topic, a level with
    // a space makes an invalid Kafka topic name; a payload over message.max.bytes is refused.
    let route = Route::new("templated", "in/+", "kafka").set("topic", format!("{good}{{topic.2}}"));
    let big = kafka_connection(&kafka.bootstrap()).librdkafka("message.max.bytes", "2000");
    let bridge = Bridge::start(&config(broker.port, big).route(route).text());
    bridge.wait_subscribed(0, 1);

    let mut publisher = Publisher::connect(broker.port).await;
    publisher.publish("in/", "first", Default::default()).await;
    publisher
        .publish("in/bad name", "second", Default::default())
        .await;
    publisher
        .publish("in/", vec![b'x'; 5000], Default::default())
        .await;
    publisher.publish("in/", "fourth", Default::default()).await;
    publisher.wait_acked(Duration::from_secs(5)).await;

    let records = read_all(&kafka.bootstrap(), &good, 1, Duration::from_secs(30), |r| {
        r.len() >= 2
    });
    let texts: Vec<String> = records.iter().map(text).collect();
    assert_eq!(
        texts,
        ["first", "fourth"],
        "bridge log:\n{}",
        bridge.log_text()
    );

    let dead_path = bridge.dir.join("dead.jsonl");
    let dead = await_dead_letters(&dead_path, 2, Duration::from_secs(10)).await;
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0]["route"], "templated");
    assert_eq!(dead[0]["error_kind"], "invalid_topic");
    assert_eq!(dead[0]["message"]["topic"], "in/bad name");
    assert_eq!(dead[0]["message"]["payload"], "second");
    assert_eq!(dead[1]["error_kind"], "too_large");
    assert_eq!(dead[1]["message"]["payload"].as_str().unwrap().len(), 5000);
}

#[tokio::test]
async fn dead_letters_can_go_to_an_mqtt_topic() {
    let broker = mosquitto();
    let kafka = KafkaUnderTest::start().await;
    let dead_topic = unique("dead");
    let mut dead = common::mqtt::Subscriber::connect(broker.port, &format!("{dead_topic}/#")).await;
    let route = Route::new("templated", "in/+", "kafka").set("topic", "t-{topic.2}");
    let bridge = Bridge::start(
        &base_config(broker.port, kafka_connection(&kafka.bootstrap()))
            .set("dead_letter.topic", format!("{dead_topic}/letters"))
            .route(route)
            .text(),
    );
    bridge.wait_subscribed(0, 1);
    let mut publisher = Publisher::connect(broker.port).await;
    publisher
        .publish("in/no way", "refused", Default::default())
        .await;
    publisher.wait_acked(Duration::from_secs(5)).await;

    let got = tokio::time::timeout(Duration::from_secs(15), dead.messages.recv()).await;
    let (topic, payload) = got
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no dead letter; log:\n{}", bridge.log_text()));
    assert_eq!(topic, format!("{dead_topic}/letters"));
    let entry: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(entry["route"], "templated");
    assert_eq!(entry["error_kind"], "invalid_topic");
    assert_eq!(entry["message"]["topic"], "in/no way");
    assert_eq!(entry["message"]["payload"], "refused");
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_the_literal_topics_partitions() {
    let broker = mosquitto();
    let kafka = KafkaUnderTest::start().await;
    let topic = unique("checked");
    create_topic(&kafka.bootstrap(), &topic, 3).await;
    let text = config(broker.port, kafka_connection(&kafka.bootstrap()))
        .route(Route::new("literal", "a/#", "kafka").set("topic", topic.as_str()))
        .route(Route::new("templated", "b/#", "kafka").set("topic", "x-{topic.2}"))
        .text();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mqbridge"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.contains("route \"literal\": topic"))
        .expect(&text);
    assert!(
        line.starts_with("ok") && line.contains("3 partition(s)"),
        "{text}"
    );
    assert!(
        !text.contains("route \"templated\": "),
        "a template has no topic to check: {text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok") && l.contains("connection \"kafka\"")),
        "{text}"
    );
}
