//! Tencent Cloud SCF routes against a stand-in of the SCF API on loopback that verifies every
//! request's TC3 signature from what it received: invocations carry the event in
//! `ClientContext`; a wrong key is `AuthFailure`, held as a configuration failure and
//! delivered once the key is mended; failures of the function are retried, then
//! dead-lettered; throttling is retried; requests stay within SCF's limits.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::config::{Config, Connection, Route};
use common::function::{await_dead_letters, dead_letters, dead_payloads};
use common::mqtt::Publisher;
use common::scf::{Outcome, ScfApi};
use common::{eventually, free_port, mosquitto, Bridge};

/// How long a test waits for the broker to acknowledge what it published.
const ACKED: Duration = Duration::from_secs(30);

const ID: &str = "AKIDmqbridgeTEST";
const KEY: &str = "mqbridge-test-secret-key";

fn config(
    mqtt_port: u16,
    admin_port: u16,
    endpoint: &str,
    key: &str,
    routes: impl IntoIterator<Item = Route>,
) -> Config {
    let scf = Connection::of("scf")
        .set("region", "ap-guangzhou")
        .set("secret_id", ID)
        .set("secret_key", key)
        .set("token", "session-token-1")
        .set("endpoint", endpoint);
    let config = Config::new(mqtt_port, "scf")
        .admin(admin_port)
        .connection("scf", scf);
    routes
        .into_iter()
        .fold(config, Config::route)
        .dead_letter("dead.jsonl")
}

/// A route to the connection `scf`, invoking `function`.
fn route(name: &str, filter: &str, function: &str) -> Route {
    Route::new(name, filter, "scf").set("function", function)
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

async fn all_delivered(api: &ScfApi, expected: &[String], limit: Duration) -> bool {
    eventually(limit, || {
        let got = api.delivered();
        expected.iter().all(|p| got.contains_key(p))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scf_invokes_the_function_with_signed_requests() {
    let broker = mosquitto();
    let api = ScfApi::start(ID, KEY, |_| Outcome::Result(0)).await;
    let admin = free_port();
    let routes = [route("battery", "cars/+/battery", "low-battery")
        .set("namespace", "fleet")
        .set("qualifier", "prod")
        .set("batch_size", 50)
        .set("max_wait", "200ms")];
    let bridge = Bridge::start(&config(broker.port, admin, &api.endpoint(), KEY, routes).text());
    bridge.wait_subscribed(0, 1);
    let mut publisher = Publisher::connect(broker.port).await;
    let msgs = numbered("level", 300);
    publisher
        .publish_payloads(|i| format!("cars/{}/battery", i % 7), &msgs, ACKED)
        .await;
    assert!(all_delivered(&api, &msgs, Duration::from_secs(20)).await);

    assert!(api.refused().is_empty(), "{:?}", api.refused());
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../schema/function-event-v1.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for (inv, _) in api.invocations() {
        assert_eq!(inv.request["FunctionName"], "low-battery");
        assert_eq!(inv.request["Namespace"], "fleet");
        assert_eq!(inv.request["Qualifier"], "prod");
        assert_eq!(inv.request["InvocationType"], "RequestResponse");
        assert_eq!(inv.headers["x-tc-token"], "session-token-1");
        assert_eq!(inv.headers["x-tc-region"], "ap-guangzhou");
        assert!(validator.is_valid(&inv.event), "{}", inv.event);
        assert!(inv.payloads().len() <= 50);
        assert_eq!(inv.event["Records"][0]["Mqtt"]["route"], "battery");
    }
    // The connection check at start authenticated.
    assert!(
        bridge.log_text().contains("authenticates the key"),
        "{}",
        bridge.log_text()
    );
    assert!(dead_letters(&bridge.dir.join("dead.jsonl")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_holds_the_messages_until_it_is_mended() {
    let broker = mosquitto();
    let api = ScfApi::start(ID, KEY, |_| Outcome::Result(0)).await;
    let admin = free_port();
    let routes = [route("cars", "cars/#", "handler").set("consumers", 1)];
    let wrong_key = config(broker.port, admin, &api.endpoint(), "not-the-key", routes);
    let mut bridge = Bridge::start(&wrong_key.text());
    bridge.wait_subscribed(0, 1);
    let mut publisher = Publisher::connect(broker.port).await;
    let msgs = numbered("held", 50);
    publisher
        .publish_payloads(|i| format!("cars/{i}"), &msgs, ACKED)
        .await;

    let refused = bridge
        .wait_metric(
            admin,
            "mqbridge_configuration_errors_total",
            1.0,
            Duration::from_secs(10),
        )
        .await;
    assert!(refused, "{}", bridge.log_text());
    let log = bridge.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("refuses the bridge's settings"))
        .expect("an ERROR line");
    assert!(
        line.contains("ERROR") && line.contains("route=\"cars\""),
        "{line}"
    );
    assert!(line.contains("AuthFailure.SignatureFailure"), "{line}");
    assert!(!log.contains("not-the-key"), "the secret is in the log");
    // Every refusal so far is counted as an authentication failure (one scrape: more
    // refusals may arrive between two).
    let metrics = common::bridge::http_get(admin, "/metrics").await;
    let counted: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("mqbridge_configuration_errors_total{"))
        .collect();
    assert!(!counted.is_empty(), "{metrics}");
    assert!(
        counted.iter().all(|l| l.contains("error=\"auth_failure\"")),
        "{counted:?}"
    );
    // Retried slowly (every 30 s), not in a fast loop: once the batches in delivery have
    // each been refused, nothing more for a while.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tries = api.refused().len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(api.refused().len(), tries, "tries again within 5 s");
    assert!(api.delivered().is_empty());
    assert!(dead_letters(&bridge.dir.join("dead.jsonl")).is_empty());

    // The key mended (a restart until reload exists): every held message arrives.
    bridge.stop();
    let mended = wrong_key.set("connections.scf.secret_key", KEY);
    std::fs::write(&bridge.config, mended.text()).unwrap();
    bridge.spawn();
    assert!(all_delivered(&api, &msgs, Duration::from_secs(30)).await);
    assert!(dead_letters(&bridge.dir.join("dead.jsonl")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_invocations_are_retried_then_dead_lettered_and_throttling_is_waited_out() {
    let broker = mosquitto();
    let tries: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let seen = tries.clone();
    let api = ScfApi::start(ID, KEY, move |inv| {
        let first = inv.payloads()[0].clone();
        if first.starts_with("bad") {
            return Outcome::Result(1);
        }
        let mut tries = seen.lock().unwrap();
        let n = tries.entry(first).or_insert(0);
        *n += 1;
        match *n {
            1 => Outcome::Error("RequestLimitExceeded"),
            2 => Outcome::Error("LimitExceeded.Concurrency"),
            _ => Outcome::Result(0),
        }
    })
    .await;
    let admin = free_port();
    let routes = [
        route("mixed", "mixed/#", "handler").set("batch_size", 10),
        route("bad", "bad/#", "handler")
            .set("batch_size", 10)
            .set("max_attempts", 3),
    ];
    let bridge = Bridge::start(&config(broker.port, admin, &api.endpoint(), KEY, routes).text());
    bridge.wait_subscribed(0, 2);
    let mut publisher = Publisher::connect(broker.port).await;
    let good = numbered("good", 60);
    let bad = numbered("bad", 12);
    publisher
        .publish_payloads(|i| format!("mixed/{}", i % 3), &good, ACKED)
        .await;
    publisher
        .publish_payloads(|_| "bad/1".into(), &bad, ACKED)
        .await;
    assert!(all_delivered(&api, &good, Duration::from_secs(30)).await);
    let dead = bridge.dir.join("dead.jsonl");
    let entries = await_dead_letters(&dead, bad.len(), Duration::from_secs(30)).await;
    assert_eq!(
        dead_payloads(&entries),
        bad.iter().map(String::as_str).collect()
    );
    for e in &entries {
        assert_eq!(e["attempts"], 3);
        assert_eq!(e["error_kind"], "function_error");
        assert!(
            e["error"].as_str().unwrap().contains("InvokeResult 1"),
            "{e}"
        );
    }
    let throttled = bridge
        .metric_where(
            admin,
            "mqbridge_delivery_retries_total",
            "error=\"throttled\"",
        )
        .await;
    assert!(throttled > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_stay_within_scfs_limits_sync_and_async() {
    let broker = mosquitto();
    let api = ScfApi::start(ID, KEY, |_| Outcome::Result(0)).await;
    let admin = free_port();
    let routes = [
        route("events", "async/#", "handler")
            .set("invocation", "async")
            .set("batch_size", 100)
            .set("max_wait", "1s")
            .set("ordered", true),
        route("bulk", "sync/#", "handler")
            .set("batch_size", 100)
            .set("max_wait", "1s")
            .set("ordered", true),
    ];
    let bridge = Bridge::start(&config(broker.port, admin, &api.endpoint(), KEY, routes).text());
    bridge.wait_subscribed(0, 2);
    let mut publisher = Publisher::connect(broker.port).await;
    // Quotes double when the event travels as a JSON string: the limit counts them.
    let small: Vec<String> = (0..12)
        .map(|i| format!("a{i:02}-{}", "\"".repeat(15_000)))
        .collect();
    let big: Vec<String> = (0..8)
        .map(|i| format!("s{i:02}-{}", "x".repeat(1_000_000)))
        .collect();
    publisher
        .publish_payloads(|_| "async/1".into(), &small, ACKED)
        .await;
    publisher
        .publish_payloads(|_| "sync/1".into(), &big, ACKED)
        .await;
    let with_huge = vec![format!("huge-{}", "\"".repeat(33 * 1024))];
    publisher
        .publish_payloads(|_| "async/1".into(), &with_huge, ACKED)
        .await;
    assert!(all_delivered(&api, &small, Duration::from_secs(30)).await);
    assert!(all_delivered(&api, &big, Duration::from_secs(30)).await);

    let invocations = api.invocations();
    let by_type = |t: &str| -> Vec<usize> {
        invocations
            .iter()
            .filter(|(i, _)| i.request["InvocationType"] == t)
            .map(|(i, _)| i.body_len)
            .collect()
    };
    let (asynchronous, synchronous) = (by_type("Event"), by_type("RequestResponse"));
    assert!(
        asynchronous.iter().all(|&n| n <= 128_000),
        "{asynchronous:?}"
    );
    assert!(
        synchronous.iter().all(|&n| n <= 6_000_000),
        "{synchronous:?}"
    );
    // 12 records of 15,000 quotes, each 60 KB once escaped twice (in the record, then in
    // ClientContext): two per request at most; 8 of ~1 MB: five at most.
    assert!(asynchronous.len() >= 6, "{asynchronous:?}");
    assert!(synchronous.len() >= 2, "{synchronous:?}");
    assert!(api.refused().is_empty());
    // 33 Ki quotes escape to 132 KiB: over the async limit alone.
    let dead = bridge.dir.join("dead.jsonl");
    let entries = await_dead_letters(&dead, 1, Duration::from_secs(10)).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry["error_kind"], "too_large");
    assert!(entry["message"]["payload"]
        .as_str()
        .unwrap()
        .starts_with("huge-"));
    let order: Vec<String> = invocations
        .iter()
        .filter(|(i, _)| i.request["InvocationType"] == "Event")
        .flat_map(|(i, _)| i.payloads())
        .collect();
    assert_eq!(order, small, "in order");
}
