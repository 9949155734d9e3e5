//! Dead letters into any sink: a route's own `dead_letter = { connection, ... }`. A message a
//! rule refuses goes to a Kafka topic with the error in its headers (as Kafka Connect's
//! dead-letter queue does), read back with a Kafka consumer; the rest flows to the route's
//! sink. tansu is read from the start of the topic.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::config::{Config, Connection, Route};
use common::kafka::{create_topic, headers, read_all, text};
use common::mqtt::Publisher;
use common::{free_port, mosquitto, unique, Bridge, KafkaUnderTest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_messages_go_to_a_kafka_topic_with_the_error_in_headers() {
    let broker = mosquitto();
    let kafka = KafkaUnderTest::start().await;
    let dlq = unique("dlq");
    create_topic(&kafka.bootstrap(), &dlq, 1).await;
    let admin = free_port();
    let transform = ".payload.value = parse_int!(.payload.reading)\n";
    let config = Config::new(broker.port, "dlsink")
        .admin(admin)
        .connection("out", Connection::file("out.jsonl"))
        .connection("kafka", Connection::kafka(&kafka.bootstrap()))
        .route(
            Route::new("meters", "meters/#", "out")
                .set("transform", transform)
                .set("dead_letter.connection", "kafka")
                .set("dead_letter.topic", dlq.as_str()),
        )
        .dead_letter("dead.jsonl")
        .text();
    let mut bridge = Bridge::start(&config);
    bridge.wait_subscribed(0, 1);
    let mut publisher = Publisher::connect(broker.port).await;
    let messages: Vec<(String, String)> = (0..20)
        .map(|n| {
            let reading = match n {
                5 | 12 => "broken".to_owned(),
                n => (n * 10).to_string(),
            };
            (
                format!("meters/m{n}"),
                format!(r#"{{"n": {n}, "reading": "{reading}"}}"#),
            )
        })
        .collect();
    publisher
        .publish_all(messages.clone(), Duration::from_secs(10))
        .await;

    let records = read_all(&kafka.bootstrap(), &dlq, 1, Duration::from_secs(30), |r| {
        r.len() >= 2
    });
    assert_eq!(records.len(), 2, "{}", bridge.log_text());
    let mut by_payload: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for r in &records {
        by_payload.insert(text(r), headers(r));
    }
    for n in [5, 12] {
        let headers = &by_payload[&messages[n].1];
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("no header {name} in {headers:?}"))
        };
        assert_eq!(header("mqbridge.error_kind"), "transform_error");
        assert_eq!(header("mqbridge.route"), "meters");
        assert_eq!(header("mqbridge.attempts"), "1");
        assert!(
            header("mqbridge.error").contains("parse_int"),
            "{headers:?}"
        );
        assert_eq!(header("mqtt.topic"), messages[n].0);
    }
    // The rest reached the route's sink, and nothing went to the bridge's dead-letter file.
    let out = bridge.dir.join("out.jsonl");
    let delivered = common::eventually(Duration::from_secs(10), || {
        common::complete_lines(&out).len() >= 18
    });
    assert!(delivered.await, "{}", bridge.log_text());
    let dead = bridge.dir.join("dead.jsonl");
    assert!(!dead.exists() || common::complete_lines(&dead).is_empty());

    // Mended, the letters are replayed from the topic, once.
    assert!(bridge.stop().is_some());
    let lenient = ".payload.value = to_int(.payload.reading) ?? 0";
    let mended = config.replace(transform.trim_end(), lenient);
    assert_ne!(mended, config);
    std::fs::write(&bridge.config, &mended).unwrap();
    let source = format!("kafka:kafka/{dlq}");
    let replay = || {
        let config = bridge.config.to_str().unwrap();
        let (code, text) = common::bridge::cli(&["replay", "--config", config, &source]);
        assert_eq!(code, 0, "{text}");
        text
    };
    let text = replay();
    let first = "replayed 2, filtered 0, dead-lettered again 0, already replayed 0";
    assert!(text.contains(first), "{text}");
    let lines = common::complete_lines(&out);
    assert_eq!(lines.len(), 20, "{lines:?}");
    for n in [5, 12] {
        let topic = format!("meters/m{n}\"");
        assert_eq!(
            lines.iter().filter(|l| l.contains(&topic)).count(),
            1,
            "{lines:?}"
        );
    }
    let text = replay();
    let again = "replayed 0, filtered 0, dead-lettered again 0, already replayed 2";
    assert!(text.contains(again), "{text}");
    assert_eq!(common::complete_lines(&out).len(), 20);
}

#[test]
fn a_dead_letter_destination_names_a_defined_connection_and_its_kinds_keys() {
    let config = Config::new(1883, "dlcheck")
        .connection("out", Connection::file("out.jsonl"))
        .connection("kafka", Connection::kafka("127.0.0.1:9092"))
        .route(
            Route::new("a", "a/#", "out")
                .set("dead_letter.connection", "nowhere")
                .set("dead_letter.topic", "x"),
        )
        .route(
            Route::new("b", "b/#", "out")
                .set("dead_letter.connection", "kafka")
                .set("dead_letter.mqtt_topic", "x"),
        )
        .text();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mqbridge.toml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mqbridge"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("route \"a\"") && text.contains("dead_letter.connection"),
        "{text}"
    );
    assert!(text.contains("connection \"nowhere\""), "{text}");
    assert!(
        text.contains("route \"b\"") && text.contains("dead_letter.mqtt_topic"),
        "{text}"
    );
}

/// `[dead_letter] connection = "NAME"`: every route's dead letters go to that connection's
/// sink, here a file of JSON lines, each the message with the error in its user properties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridges_dead_letters_go_to_a_connection_named_in_its_dead_letter_section() {
    let broker = mosquitto();
    let config = Config::new(broker.port, "dlfile")
        .connection("out", Connection::file("out.jsonl"))
        .connection("dead", Connection::file("dead-letters.jsonl"))
        .route(Route::new("meters", "meters/#", "out").set(
            "transform",
            ".payload.value = parse_int!(.payload.reading)\n",
        ))
        .set("dead_letter.connection", "dead")
        .text();
    let bridge = Bridge::start(&config);
    bridge.wait_subscribed(0, 1);
    let mut publisher = Publisher::connect(broker.port).await;
    let messages = vec![
        ("meters/a".to_owned(), r#"{"reading": "1"}"#.to_owned()),
        ("meters/b".to_owned(), r#"{"reading": "one"}"#.to_owned()),
        ("meters/c".to_owned(), r#"{"reading": "3"}"#.to_owned()),
    ];
    publisher
        .publish_all(messages, Duration::from_secs(10))
        .await;
    let dead = bridge.dir.join("dead-letters.jsonl");
    let arrived = common::eventually(Duration::from_secs(10), || {
        !common::complete_lines(&dead).is_empty()
    });
    assert!(arrived.await, "{}", bridge.log_text());
    let letters = common::json_lines(&dead);
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter["topic"], "meters/b");
    assert_eq!(letter["payload"], r#"{"reading": "one"}"#);
    let props: Vec<(String, String)> =
        serde_json::from_value(letter["user_properties"].clone()).unwrap();
    assert!(
        props.contains(&("mqbridge.error_kind".into(), "transform_error".into())),
        "{props:?}"
    );
    assert!(
        props.contains(&("mqbridge.route".into(), "meters".into())),
        "{props:?}"
    );
    let out = bridge.dir.join("out.jsonl");
    let delivered = common::eventually(Duration::from_secs(10), || {
        common::complete_lines(&out).len() == 2
    });
    assert!(delivered.await, "{}", bridge.log_text());
}
