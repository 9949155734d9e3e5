//! What ships beside the binary: the Grafana dashboard queries only metrics that a running
//! bridge exports, and the systemd unit passes `systemd-analyze verify` (where systemd is
//! there).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::PublishProperties;

use common::bridge::{http_get, http_request};
use common::config::{Config, Connection, Route};
use common::function::{FunctionServer, Reply};
use common::kafka::{create_topic, produce, producer};
use common::mqtt::Publisher;
use common::{free_port, mosquitto, Bridge, KafkaUnderTest};

/// The metric names in the dashboard's queries (histograms by their base name).
fn dashboard_metrics() -> BTreeSet<String> {
    let text = include_str!("../deploy/grafana/mqbridge.json");
    let dashboard: serde_json::Value = serde_json::from_str(text).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(definition) = variable["definition"].as_str() {
            exprs.push(definition.to_owned());
        }
    }
    let mut names = BTreeSet::new();
    for expr in exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("mqbridge_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            let name = &tail[..end];
            names.insert(name.strip_suffix("_bucket").unwrap_or(name).to_owned());
            rest = &tail[end..];
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_queries_only_metrics_a_running_bridge_exports() {
    let names = dashboard_metrics();
    assert!(names.len() >= 15, "{names:?}");
    let broker = mosquitto();
    // "bad" fails in the function (retried, then dead-lettered); "unauth" is refused as the
    // bridge's settings.
    let server = FunctionServer::start(|call| {
        // A Kafka record (no MQTT payload) is taken.
        let first = call.payloads().first().cloned().unwrap_or_default();
        match first.as_str() {
            "bad" => Reply::status(400),
            "unauth" => Reply::status(401),
            _ => Reply::ok(),
        }
    })
    .await;
    // A route reading Kafka, for the source's metrics (its lag).
    let kafka = KafkaUnderTest::start().await;
    create_topic(&kafka.bootstrap(), "orders", 1).await;
    let admin = free_port();
    let config = Config::new(broker.port, "dash")
        .admin(admin)
        .connection("fn", Connection::http(&server.url()))
        .connection("ck", Connection::kafka(&kafka.bootstrap()))
        .route(
            Route::new("cars", "cars/#", "fn")
                .set("batch_size", 1)
                .set("max_attempts", 2),
        )
        .route(Route::reading("orders", "ck", "orders", "fn"))
        .dead_letter("dead.jsonl")
        .text();
    let bridge = Bridge::start(&config);
    bridge.wait_subscribed(0, 1);
    produce(&producer(&kafka.bootstrap()), "orders", None, &[], "ok").await;
    let read = bridge
        .wait_metric(
            admin,
            "mqbridge_messages_delivered_total",
            1.0,
            Duration::from_secs(30),
        )
        .await;
    assert!(read, "the Kafka record was not delivered");
    let mut publisher = Publisher::connect(broker.port).await;
    for p in ["ok", "bad", "unauth"] {
        publisher
            .publish(&format!("cars/{p}"), p, PublishProperties::default())
            .await;
    }
    publisher.wait_acked(Duration::from_secs(10)).await;
    assert!(
        bridge
            .wait_metric(
                admin,
                "mqbridge_messages_failed_total",
                1.0,
                Duration::from_secs(10)
            )
            .await
    );
    assert!(
        bridge
            .wait_metric(
                admin,
                "mqbridge_configuration_errors_total",
                1.0,
                Duration::from_secs(10)
            )
            .await
    );
    assert_eq!(
        http_request(admin, "POST", "/routes/cars/pause", None)
            .await
            .0,
        200
    );
    assert_eq!(http_request(admin, "POST", "/reload", None).await.0, 200);
    let exported = http_get(admin, "/metrics").await;
    let present = |name: &str| {
        exported
            .lines()
            .any(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ', '_']))
    };
    let missing: Vec<&String> = names.iter().filter(|n| !present(n)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics the bridge does not export: {missing:?}\n{exported}"
    );
}

#[test]
fn the_systemd_unit_verifies() {
    let unit = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/mqbridge.service");
    let text = std::fs::read_to_string(unit).unwrap();
    for line in [
        "ExecStartPre=/usr/local/bin/mqbridge validate --config /etc/mqbridge/mqbridge.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}");
    }
    // scripts/test installs it (Debian's systemd package): its absence is a failure.
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(unit)
        .output()
        .expect("systemd-analyze (Debian's systemd package; scripts/test installs it)");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    // The binary is not installed here: that one complaint is expected, nothing else.
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !l.contains("/usr/local/bin/mqbridge"))
        .collect();
    assert!(problems.is_empty(), "{text}");
}
