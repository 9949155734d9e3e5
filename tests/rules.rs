//! Rules on real servers: a `where` in front of an HTTP function, a `transform` setting Kafka
//! topics and keys, a schema and a failing program each dead-lettering one message while the
//! rest flows in order, a reload changing a program, and `validate` locating an error inside a
//! program.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::bridge::{cli, cli_with_input, flow_settled, http_request};
use common::config::{Config, Connection, Route};
use common::function::{await_dead_letters, FunctionServer, Reply};
use common::kafka::{create_topic, read_all, text};
use common::mqtt::Publisher;
use common::{eventually, free_port, json_lines, mosquitto, unique, Bridge, KafkaUnderTest};
use rdkafka::Message;

/// How long a test waits for the broker to acknowledge what it published.
const ACKED: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_where_sends_only_matching_messages_to_the_function_and_acknowledges_the_rest() {
    let broker = mosquitto();
    let server = FunctionServer::start(|_| Reply::ok()).await;
    let admin = free_port();
    let config = Config::new(broker.port, "where")
        .admin(admin)
        .connection("fn", Connection::http(&server.url()))
        .route(
            Route::new("battery", "cars/+/battery", "fn")
                .set("batch_size", 10)
                .set("where", "int!(.payload.battery) < 20"),
        )
        .dead_letter("dead.jsonl")
        .text();
    let mut bridge = Bridge::start(&config);
    bridge.wait_subscribed(0, 1);
    let mut publisher = Publisher::connect(broker.port).await;
    let messages: Vec<(String, String)> = (0..100)
        .map(|i| {
            let payload = format!(r#"{{"car": {i}, "battery": {}}}"#, (i * 7) % 100);
            (format!("cars/{}/battery", i % 10), payload)
        })
        .collect();
    let low: Vec<&String> = messages
        .iter()
        .filter(|(_, p)| {
            let v: serde_json::Value = serde_json::from_str(p).unwrap();
            v["battery"].as_i64().unwrap() < 20
        })
        .map(|(_, p)| p)
        .collect();
    assert_eq!(low.len(), 20);
    publisher.publish_all(messages.clone(), ACKED).await;
    let filtered = "mqbridge_messages_filtered_total";
    assert!(
        bridge
            .wait_metric(admin, filtered, 80.0, Duration::from_secs(20))
            .await
    );
    assert!(eventually(Duration::from_secs(20), || server.delivered().len() >= 20).await);
    let delivered = server.delivered();
    assert_eq!(delivered.len(), 20, "{delivered:?}");
    assert!(
        low.iter().all(|p| delivered.get(*p) == Some(&1)),
        "{delivered:?}"
    );
    let status = flow_settled(admin, "routes", "battery").await;
    assert_eq!(status["in_flight"], 0, "{status}");
    assert_eq!(status["filtered"], 80, "{status}");
    assert_eq!(status["delivered"], 20, "{status}");
    // The broker holds nothing for the group: after a restart, only a new message arrives.
    assert_eq!(bridge.stop(), Some(0));
    bridge.spawn();
    bridge.wait_subscribed(1, 1);
    let marker = r#"{"car": "marker", "battery": 1}"#.to_owned();
    publisher
        .publish_all([("cars/m/battery".into(), marker.clone())], ACKED)
        .await;
    assert!(
        eventually(Duration::from_secs(20), || server
            .delivered()
            .contains_key(&marker))
        .await
    );
    assert_eq!(
        bridge.metric(admin, filtered).await,
        0.0,
        "nothing came back"
    );
    let delivered = server.delivered();
    assert_eq!(delivered.len(), 21, "{delivered:?}");
    assert!(delivered.values().all(|n| *n == 1), "{delivered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_refusal_and_a_failing_transform_dead_letter_one_message_each_while_the_rest_flows_in_order(
) {
    let broker = mosquitto();
    let admin = free_port();
    let schema = r#"{"type": "object", "required": ["n"],
        "properties": {"n": {"type": "integer"}, "reading": {"type": "string"}}}"#;
    let transform = r#"
        .payload.value = parse_int!(.payload.reading)
        del(.payload.reading)
        .properties.checked = "yes"
    "#;
    let files = tempfile::tempdir().unwrap();
    let schema_path = files.path().join("meter.schema.json");
    std::fs::write(&schema_path, schema).unwrap();
    let config = Config::new(broker.port, "schema")
        .admin(admin)
        .connection("out", Connection::file("out.jsonl"))
        .route(
            Route::new("meters", "meters/#", "out")
                .set("schema", schema_path.display().to_string())
                .set("transform", transform),
        )
        .dead_letter("dead.jsonl")
        .text();
    let bridge = Bridge::start(&config);
    bridge.wait_subscribed(0, 1);
    let mut publisher = Publisher::connect(broker.port).await;
    let messages: Vec<(String, String)> = (0..50)
        .map(|n| {
            let payload = match n {
                17 => r#"{"n": "seventeen", "reading": "17"}"#.to_owned(),
                31 => r#"{"n": 31, "reading": "thirty-one"}"#.to_owned(),
                n => format!(r#"{{"n": {n}, "reading": "{}"}}"#, n * 10),
            };
            ("meters/m1".to_owned(), payload)
        })
        .collect();
    publisher.publish_all(messages.clone(), ACKED).await;
    let dead = await_dead_letters(&bridge.dir.join("dead.jsonl"), 2, Duration::from_secs(20)).await;
    let kinds: HashMap<&str, &str> = dead
        .iter()
        .map(|e| {
            (
                e["error_kind"].as_str().unwrap(),
                e["message"]["payload"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(kinds["schema_invalid"], messages[17].1, "{dead:?}");
    assert_eq!(kinds["transform_error"], messages[31].1, "{dead:?}");
    let out = bridge.dir.join("out.jsonl");
    assert!(eventually(Duration::from_secs(20), || json_lines(&out).len() >= 48).await);
    let records = json_lines(&out);
    let values: Vec<i64> = records
        .iter()
        .map(|r| {
            let payload: serde_json::Value =
                serde_json::from_str(r["payload"].as_str().unwrap()).unwrap();
            assert!(payload.get("reading").is_none(), "{payload}");
            payload["value"].as_i64().unwrap()
        })
        .collect();
    let expected: Vec<i64> = (0..50)
        .filter(|n| ![17, 31].contains(n))
        .map(|n| n * 10)
        .collect();
    assert_eq!(values, expected, "in order, reshaped");
    assert!(records
        .iter()
        .all(|r| r["user_properties"].to_string().contains("checked")));
    let status = flow_settled(admin, "routes", "meters").await;
    assert_eq!(status["in_flight"], 0, "{status}");
    assert_eq!(status["dead_lettered"], 2, "{status}");
    assert_eq!(status["delivered"], 48, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transform_reshapes_payloads_and_sets_kafka_topic_and_key_per_message() {
    let broker = mosquitto();
    let kafka = KafkaUnderTest::start().await;
    let prefix = unique("traffic");
    let (cars, trucks) = (format!("{prefix}-cars"), format!("{prefix}-trucks"));
    create_topic(&kafka.bootstrap(), &cars, 1).await;
    create_topic(&kafka.bootstrap(), &trucks, 1).await;
    let transform = format!(
        r#"
        .payload = {{ "plate": .payload.plate, "kmh": .payload.speed }}
        .destination.key = .payload.plate
        .destination.topic = "{prefix}-" + string!(.topic_levels[2])
        "#
    );
    let route = Route::new("traffic", "city/+/+", "kafka")
        .set("topic", format!("{prefix}-unused"))
        .set("transform", transform);
    let config = Config::new(broker.port, "transform")
        .connection("kafka", Connection::kafka(&kafka.bootstrap()))
        .route(route)
        .dead_letter("dead.jsonl")
        .text();
    let bridge = Bridge::start(&config);
    bridge.wait_subscribed(0, 1);
    let mut publisher = Publisher::connect(broker.port).await;
    let messages: Vec<(String, String)> = (0..20)
        .map(|i| {
            let kind = ["cars", "trucks"][i % 2];
            let payload = format!(
                r#"{{"plate": "P-{i}", "speed": {}, "lat": 52.5, "lon": 13.4}}"#,
                i * 3
            );
            (format!("city/berlin/{kind}"), payload)
        })
        .collect();
    publisher.publish_all(messages, ACKED).await;
    for (topic, parity) in [(&cars, 0), (&trucks, 1)] {
        let records = read_all(&kafka.bootstrap(), topic, 1, Duration::from_secs(30), |r| {
            r.len() >= 10
        });
        assert_eq!(records.len(), 10, "{topic}: {}", bridge.log_text());
        for (n, record) in records.iter().enumerate() {
            let i = n * 2 + parity;
            let key = format!("P-{i}");
            assert_eq!(record.key(), Some(key.as_bytes()), "{topic}");
            let payload: serde_json::Value = serde_json::from_str(&text(record)).unwrap();
            assert_eq!(payload, serde_json::json!({"plate": key, "kmh": i * 3}));
        }
    }
}

#[test]
fn validate_points_at_the_line_and_column_inside_a_program() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    let config = Config::new(1883, "validate")
        .connection("fn", Connection::http("http://127.0.0.1:9/"))
        .route(
            Route::new("battery", "cars/+/battery", "fn")
                .set("where", ".retain ||\n  to_nt(.payload.battery) < 20")
                .set("transform", ".payload.x = 1\n.payload.y = ")
                .set("schema", "missing.json"),
        )
        .text();
    std::fs::write(&path, config).unwrap();
    let (code, out) = cli(&["validate", "--config", path.to_str().unwrap()]);
    assert_ne!(code, 0, "{out}");
    let line = |key: &str| {
        out.lines()
            .find(|l| l.contains("route \"battery\"") && l.contains(key))
            .unwrap_or_else(|| panic!("no problem with {key}: {out}"))
            .to_owned()
    };
    let filter = line("where");
    assert!(
        filter.contains("line 2, column 3") && filter.contains("to_nt"),
        "{out}"
    );
    assert!(line("transform").contains("line 2"), "{out}");
    assert!(line("schema").contains("missing.json"), "{out}");
}

#[test]
fn test_rule_prints_what_a_route_would_deliver_filter_or_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    let config = Config::new(1883, "try")
        .connection("fn", Connection::http("http://127.0.0.1:9/"))
        .route(
            Route::new("battery", "cars/+/battery", "fn")
                .set("where", "int!(.payload.battery) < 20")
                .set(
                    "transform",
                    ".payload.car = .topic_levels[1]\n.destination.key = .topic_levels[1]",
                ),
        )
        .text();
    std::fs::write(&path, config).unwrap();
    let input = [
        r#"{"topic": "cars/7/battery", "payload": {"battery": 12}}"#,
        r#"{"topic": "cars/8/battery", "payload": {"battery": 80}}"#,
        r#"{"topic": "cars/9/battery", "payload": "low"}"#,
        "not a message",
    ]
    .join("\n");
    let args = [
        "test-rule",
        "--config",
        path.to_str().unwrap(),
        "--route",
        "battery",
    ];
    let (code, out) = cli_with_input(&args, &input);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(lines[0]["outcome"], "deliver");
    let delivered = &lines[0]["messages"][0];
    assert_eq!(
        delivered["payload"],
        serde_json::json!({"battery": 12, "car": "7"})
    );
    assert_eq!(delivered["destination"]["key"], "7");
    assert_eq!(lines[1]["outcome"], "filter");
    assert_eq!(lines[2]["outcome"], "dead_letter");
    assert_eq!(lines[2]["error_kind"], "transform_error");
    assert_eq!(lines[3]["outcome"], "bad_input");
    let (code, _) = cli_with_input(
        &[
            "test-rule",
            "--config",
            path.to_str().unwrap(),
            "--route",
            "nope",
        ],
        "",
    );
    assert_eq!(code, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changing_a_program_takes_effect_without_reconnecting_the_other_routes() {
    let broker = mosquitto();
    let admin = free_port();
    let common = Config::new(broker.port, "reload")
        .admin(admin)
        .connection("out", Connection::file("out.jsonl"))
        .connection("other", Connection::file("other.jsonl"))
        .route(Route::new("plain", "plain/#", "other"))
        .dead_letter("dead.jsonl");
    let base = |threshold: u32| {
        let ruled = Route::new("ruled", "ruled/#", "out")
            .set("where", format!("int!(.payload.v) < {threshold}"));
        common.clone().route(ruled).text()
    };
    let bridge = Bridge::start(&base(10));
    bridge.wait_subscribed(0, 2);
    let mut publisher = Publisher::connect(broker.port).await;
    let batch = |tag: &str| -> Vec<(String, String)> {
        (0..20)
            .map(|v| {
                (
                    "ruled/a".to_owned(),
                    format!(r#"{{"v": {v}, "tag": "{tag}"}}"#),
                )
            })
            .collect()
    };
    publisher.publish_all(batch("before"), ACKED).await;
    let out = bridge.dir.join("out.jsonl");
    assert!(eventually(Duration::from_secs(20), || json_lines(&out).len() >= 10).await);
    let connects = "mqbridge_mqtt_connects_total";
    let plain_connects = bridge
        .metric_where(admin, connects, "route=\"plain\"")
        .await;
    std::fs::write(&bridge.config, base(15)).unwrap();
    let (status, body) = http_request(admin, "POST", "/reload", None).await;
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["restarted"], serde_json::json!(["ruled"]), "{body}");
    assert_eq!(report["unchanged"], serde_json::json!(["plain"]), "{body}");
    bridge.wait_subscribed(2, 1);
    publisher.publish_all(batch("after"), ACKED).await;
    let arrived = eventually(Duration::from_secs(20), || json_lines(&out).len() >= 25).await;
    assert!(
        arrived,
        "{} lines; log:\n{}",
        json_lines(&out).len(),
        bridge.log_text()
    );
    let after = json_lines(&out)
        .iter()
        .filter(|r| r["payload"].as_str().unwrap().contains("after"))
        .count();
    assert_eq!(after, 15, "the new condition");
    assert_eq!(
        bridge
            .metric_where(admin, connects, "route=\"plain\"")
            .await,
        plain_connects,
        "the untouched route kept its connection"
    );
}
