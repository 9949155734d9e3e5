//! `mqbridge validate`: each broken config is reported with the section, field and line, exit
//! code 2; a file holding every mistake at once reports every one; valid files exit 0.

mod common;

use std::process::Command;

use common::config::{Config, Connection, Downlink, Route};

const BASE: &str = r#"
[mqtt]
url = "mqtt://127.0.0.1:1883"

[connections.events]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"

[[routes]]
name = "traffic"
filters = ["city/+/vehicles/#"]
connection = "events"
topic = "traffic"
"#;

/// (what is broken, replace this, with this, expected message)
const CASES: &[(&str, &str, &str, &str)] = &[
    (
        "unknown key",
        "bootstrap_servers = \"127.0.0.1:9092\"",
        "bootstrap_servers = \"127.0.0.1:9092\"\ncompresion = \"zstd\"",
        "line 8: connection \"events\", field `compresion`: unknown key",
    ),
    (
        "bad URL",
        "url = \"mqtt://127.0.0.1:1883\"",
        "url = \"http//broker\"",
        "line 3: [mqtt], field `url`: \"http//broker\" is not a URL",
    ),
    (
        "missing env var",
        "url = \"mqtt://127.0.0.1:1883\"",
        "url = \"mqtt://127.0.0.1:1883\"\npassword = \"${MQBRIDGE_SURELY_UNSET}\"",
        "line 4: [mqtt], field `password`: environment variable MQBRIDGE_SURELY_UNSET is not set",
    ),
    (
        "unknown connection",
        "connection = \"events\"",
        "connection = \"evnts\"",
        "line 12: route \"traffic\", field `connection`: names connection \"evnts\", which is not defined (known: \"events\")",
    ),
    (
        "invalid filter",
        "filters = [\"city/+/vehicles/#\"]",
        "filters = [\"a/#/b\"]",
        "line 11: route \"traffic\", field `filters`: \"a/#/b\" is not a valid topic filter",
    ),
    (
        "bad template",
        "topic = \"traffic\"",
        "topic = \"traffic-{topic.2\"",
        "line 13: route \"traffic\", field `topic`: bad template \"traffic-{topic.2\": unclosed `{`",
    ),
    (
        "zero consumers",
        "topic = \"traffic\"",
        "topic = \"traffic\"\nconsumers = 0",
        "line 14: route \"traffic\", field `consumers`: must be at least 1",
    ),
    (
        "wrong type",
        "topic = \"traffic\"",
        "topic = \"traffic\"\nqos = \"one\"",
        "line 14: route \"traffic\", field `qos`: invalid type: string \"one\"",
    ),
    (
        "setting the bridge owns",
        "bootstrap_servers = \"127.0.0.1:9092\"",
        "bootstrap_servers = \"127.0.0.1:9092\"\nlibrdkafka = { \"acks\" = \"1\" }",
        "line 8: connection \"events\", field `librdkafka.acks`: set by the bridge",
    ),
    (
        "librdkafka refuses a setting",
        "bootstrap_servers = \"127.0.0.1:9092\"",
        "bootstrap_servers = \"127.0.0.1:9092\"\nlibrdkafka = { \"linger.msx\" = \"1\" }",
        "connection \"events\", field `librdkafka`: librdkafka refuses the settings",
    ),
    (
        "QoS 2",
        "topic = \"traffic\"",
        "topic = \"traffic\"\nqos = 2",
        "line 14: route \"traffic\", field `qos`: 2 is not supported: QoS 1 already gives at-least-once delivery",
    ),
    (
        "keep-alive rumqttc would refuse",
        "url = \"mqtt://127.0.0.1:1883\"",
        "url = \"mqtt://127.0.0.1:1883\"\nkeep_alive = \"2s\"",
        "line 4: [mqtt], field `keep_alive`: must be between 5s and 65535s",
    ),
    (
        "admin API open to other hosts without a token",
        "topic = \"traffic\"",
        "topic = \"traffic\"\n\n[admin]\nlisten = \"0.0.0.0:9464\"",
        "line 16: [admin], field `listen`: 0.0.0.0:9464 is reachable from other hosts: set `token`",
    ),
    (
        "TOML syntax",
        "name = \"traffic\"",
        "name = \"traffic",
        "line 10: TOML syntax:",
    ),
];

fn validate(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mqbridge"))
        .args(["validate", "--config"])
        .arg(&path)
        .env_remove("MQBRIDGE_SURELY_UNSET")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code().unwrap(), text)
}

#[test]
fn the_base_config_is_valid() {
    let (code, out) = validate(BASE);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("valid (1 connection(s), 1 route(s), 1 enabled)"),
        "{out}"
    );
}

#[test]
fn each_broken_config_names_section_field_and_line() {
    for (what, from, to, expected) in CASES {
        assert!(BASE.contains(from), "case {what}: base lacks {from}");
        let (code, out) = validate(&BASE.replacen(from, to, 1));
        assert_eq!(code, 2, "case {what}: exit code; output:\n{out}");
        assert!(
            out.contains(expected),
            "case {what}: expected\n  {expected}\nin\n{out}"
        );
    }
}

#[test]
fn one_file_with_every_mistake_reports_every_one() {
    let broken = r#"
[mqtt]
url = "http//broker"
password = "${MQBRIDGE_SURELY_UNSET}"
recieve_maximum = 10

[connections.events]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"
compresion = "zstd"

[[routes]]
name = "traffic"
filters = ["a/#/b"]
connection = "evnts"
consumers = 0
topic = "traffic-{topic.2"
"#;
    let (code, out) = validate(broken);
    assert_eq!(code, 2, "{out}");
    for expected in [
        "line 3: [mqtt], field `url`",
        "line 4: [mqtt], field `password`: environment variable MQBRIDGE_SURELY_UNSET is not set",
        "line 5: [mqtt], field `recieve_maximum`: unknown key",
        "line 10: connection \"events\", field `compresion`: unknown key",
        "line 14: route \"traffic\", field `filters`",
        "line 15: route \"traffic\", field `connection`",
        "line 16: route \"traffic\", field `consumers`: must be at least 1",
        "line 17: route \"traffic\", field `topic`: bad template",
        "8 problems",
    ] {
        assert!(out.contains(expected), "expected\n  {expected}\nin\n{out}");
    }
}

#[test]
fn the_example_config_is_valid() {
    let out = Command::new(env!("CARGO_BIN_EXE_mqbridge"))
        .arg("example-config")
        .output()
        .unwrap();
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("example.toml");
    std::fs::write(&path, &out.stdout).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mqbridge"))
        .args(["validate", "--config"])
        .arg(&path)
        .env("MQTT_PASSWORD", "secret-value")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!text.contains("secret-value"));
}

#[test]
fn the_shipped_configs_are_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    for file in [
        "config/demo.toml",
        "config/example.toml",
        "docker/mqbridge.toml",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_mqbridge"))
            .args(["validate", "--config"])
            .arg(format!("{root}/{file}"))
            .env("MQBRIDGE_DEMO_PORT", "1883")
            .env("MQTT_PASSWORD", "x")
            .env("MQBRIDGE_ADMIN_TOKEN", "x")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{file}: {text}");
    }
}

#[test]
fn a_small_max_packet_size_is_valid_but_warned_about() {
    let text = BASE.replace(
        "url = \"mqtt://127.0.0.1:1883\"",
        "url = \"mqtt://127.0.0.1:1883\"\nmax_packet_size = 1048576",
    );
    let (code, out) = validate(&text);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "warning: [mqtt] max_packet_size = 1048576: the broker drops a larger message"
        ),
        "{out}"
    );
    let (_, out) = validate(BASE);
    assert!(!out.contains("warning"), "{out}");
}

#[test]
fn function_secrets_are_checked_without_showing_them() {
    let text = r#"
[mqtt]
url = "mqtt://127.0.0.1:1883"

[connections.fn]
type = "http"
url = "http://127.0.0.1:9/invoke"
bearer_token = "line1\nline2-secret-value"
signature_secret = ""

[[routes]]
name = "cars"
filters = ["cars/#"]
connection = "fn"
"#;
    let (code, out) = validate(text);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("field `bearer_token`: not valid in a header"),
        "{out}"
    );
    assert!(out.contains("field `signature_secret`: empty"), "{out}");
    assert!(!out.contains("secret-value"), "{out}");
}

/// What the tests' config builder writes is a config the bridge accepts: every method of it,
/// with a dotted `[mqtt]` key, a librdkafka setting whose name has dots, and `env.X`.
#[test]
fn the_test_config_builder_writes_valid_configs() {
    let text = Config::new(1883, "builder")
        .mqtt("receive_maximum", 32)
        .mqtt("keep_alive", "5s")
        .mqtt("publisher.client_id_property", "source-client")
        .admin(9464)
        .admin_key("token", "admin-token")
        .connection("out", Connection::file("out.jsonl"))
        .connection(
            "events",
            Connection::kafka("127.0.0.1:9092")
                .set("compression", "zstd")
                .librdkafka("linger.ms", "5"),
        )
        .connection(
            "fn",
            Connection::http("http://127.0.0.1:9/invoke").set("timeout", "5s"),
        )
        .connection(
            "local",
            Connection::exec(&["sh", "-c", "cat > /dev/null"])
                .set("env.X", "1")
                .set("max_processes", 2),
        )
        .connection("custom", Connection::of("file").set("path", "custom.jsonl"))
        .route(
            Route::new("traffic", "city/+/vehicles/#", "events")
                .filters(&["city/+/vehicles/#", "city/+/lights/+"])
                .set("topic", "traffic-{topic.2}")
                .set("consumers", 2)
                .set("batch_size", 50)
                .set("max_wait", "200ms"),
        )
        .route(Route::new("archive", "archive/#", "out").set("enabled", false))
        .route(Route::new("cars", "cars/#", "fn").set("concurrency", 4))
        .route(Route::new("local", "local/#", "local").set("max_attempts", 2))
        .route(Route::new("custom", "custom/#", "custom"))
        .downlink(
            Downlink::new("commands", "events", "commands", "devices/{key}/cmd").set("qos", 1),
        )
        .dead_letter("dead.jsonl")
        .set("shutdown_timeout", "10s")
        .text();
    let (code, out) = validate(&text);
    assert_eq!(code, 0, "{out}\n{text}");
    assert!(
        out.contains("valid (5 connection(s), 5 route(s), 4 enabled)"),
        "{out}"
    );

    let parsed: toml::Table = text.parse().unwrap();
    let events = &parsed["connections"]["events"];
    assert_eq!(
        events["librdkafka"]["linger.ms"].as_str(),
        Some("5"),
        "{text}"
    );
    assert_eq!(events["librdkafka"].as_table().unwrap().len(), 1, "{text}");
    assert_eq!(
        parsed["mqtt"]["publisher"]["client_id_property"].as_str(),
        Some("source-client")
    );
    assert_eq!(
        parsed["connections"]["local"]["env"]["X"].as_str(),
        Some("1")
    );
    assert_eq!(
        parsed["routes"][0]["filters"].as_array().unwrap().len(),
        2,
        "{text}"
    );
    assert_eq!(parsed["routes"][0]["consumers"].as_integer(), Some(2));
}

/// The README's rule examples, run through `test-rule` on a message each: they compile and do
/// what the README says.
#[test]
fn the_readme_rule_examples_work() {
    let readme = include_str!("../README.md");
    let section =
        &readme[readme.find("**Examples.**").unwrap()..readme.find("## The Kafka record").unwrap()];
    let blocks: Vec<&str> = section
        .split("```toml\n")
        .skip(1)
        .map(|b| &b[..b.find("```").unwrap()])
        .collect();
    assert_eq!(blocks.len(), 3, "{section}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("schemas")).unwrap();
    let schema = r#"{"type": "object", "required": ["fault_code"]}"#;
    std::fs::write(dir.path().join("schemas/pile-will.json"), schema).unwrap();
    let connections = r#"
[mqtt]
url = "mqtt://127.0.0.1:1883"
[connections.low-battery]
type = "http"
url = "http://127.0.0.1:9/"
[connections.kafka]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"
[connections.rocketmq]
type = "rocketmq"
namesrv = ["127.0.0.1:9876"]
"#;
    let path = dir.path().join("rules.toml");
    std::fs::write(&path, format!("{connections}\n{}", blocks.join("\n"))).unwrap();
    let config = path.to_str().unwrap();
    let try_one = |route: &str, sample: &str| -> serde_json::Value {
        let args = ["test-rule", "--config", config, "--route", route];
        let (code, out) = common::bridge::cli_with_input(&args, sample);
        assert_eq!(code, 0, "{route}: {out}");
        serde_json::from_str(out.trim()).unwrap()
    };
    let low = try_one(
        "battery",
        r#"{"topic": "cars/7/battery", "payload": {"level": 64}}"#,
    );
    assert_eq!(low["outcome"], "filter");
    let traffic = try_one(
        "traffic",
        r#"{"topic": "city/berlin/vehicles/B-1", "payload": {"plate": "B-1", "speed_kmh": 40, "x": 1}}"#,
    );
    let record = &traffic["messages"][0];
    assert_eq!(
        record["destination"]["topic"], "traffic.berlin",
        "{traffic}"
    );
    assert_eq!(record["destination"]["key"], "B-1");
    assert_eq!(record["payload"]["kmh"], 40);
    assert!(record["payload"].get("x").is_none());
    let will = try_one(
        "pile-faults",
        r#"{"topic": "piles/P-9/will", "payload": {"fault_code": 42}}"#,
    );
    assert_eq!(
        will["messages"][0]["destination"]["tag"], "fault-42",
        "{will}"
    );
    let bad = try_one(
        "pile-faults",
        r#"{"topic": "piles/P-9/will", "payload": {"x": 1}}"#,
    );
    assert_eq!(bad["error_kind"], "schema_invalid", "{bad}");
}
