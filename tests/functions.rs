//! Function triggers against real processes: mosquitto, the bridge binary, and a local function
//! server (HTTP) or command (exec). Each fault test publishes numbered QoS 1 messages and ends
//! with every number delivered or dead-lettered, none lost.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use sha2::Sha256;

use common::config::{Config, Connection, Route};
use common::function::{
    await_dead_letters, dead_letters, dead_payloads, Call, FunctionServer, Reply,
};
use common::mqtt::Publisher;
use common::{eventually, free_port, mosquitto, unique, Bridge};

/// How long a test waits for the broker to acknowledge what it published.
const ACKED: Duration = Duration::from_secs(20);

/// The config without its dead letters: connection `fn`, the routes given.
fn base(
    mqtt_port: u16,
    admin_port: u16,
    connection: Connection,
    routes: impl IntoIterator<Item = Route>,
) -> Config {
    routes.into_iter().fold(
        Config::new(mqtt_port, "fn")
            .admin(admin_port)
            .connection("fn", connection),
        Config::route,
    )
}

/// A bridge config: one connection, the routes given, dead letters in `dead.jsonl`.
fn config(
    mqtt_port: u16,
    admin_port: u16,
    connection: Connection,
    routes: impl IntoIterator<Item = Route>,
) -> Config {
    base(mqtt_port, admin_port, connection, routes).dead_letter("dead.jsonl")
}

/// A route to the connection `fn`.
fn route(name: &str, filter: &str) -> Route {
    Route::new(name, filter, "fn")
}

/// An `exec` connection running `program`, its `env.OUT` set to `out`.
fn exec_writing_to(program: &std::path::Path, out: &std::path::Path) -> Connection {
    Connection::exec(&[&program.display().to_string()]).set("env.OUT", out.display().to_string())
}

/// Starts the bridge, waits until its consumers hold `subscriptions` subscriptions, and
/// connects a publisher.
async fn start(
    broker: u16,
    admin: u16,
    connection: Connection,
    routes: impl IntoIterator<Item = Route>,
    subscriptions: usize,
) -> (Bridge, Publisher) {
    let bridge = Bridge::start(&config(broker, admin, connection, routes).text());
    bridge.wait_subscribed(0, subscriptions);
    (bridge, Publisher::connect(broker).await)
}

fn schema() -> jsonschema::Validator {
    let text = include_str!("../schema/function-event-v1.json");
    jsonschema::validator_for(&serde_json::from_str(text).unwrap()).unwrap()
}

/// Waits until every payload in `expected` was delivered (or `limit` passes).
async fn all_delivered(server: &FunctionServer, expected: &[String], limit: Duration) -> bool {
    eventually(limit, || {
        let got = server.delivered();
        expected.iter().all(|p| got.contains_key(p))
    })
    .await
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_delivers_signed_events_batched_by_count_and_time() {
    let broker = mosquitto();
    let server = FunctionServer::start(|_| Reply::ok()).await;
    let admin = free_port();
    let connection = Connection::http(&server.url())
        .set("bearer_token", "t0ken")
        .set("signature_secret", "s3cret")
        .set("headers.X-Tenant", "fleet-7");
    let routes = [
        route("cars", "cars/#")
            .set("batch_size", 50)
            .set("max_wait", "300ms"),
        route("raw", "raw/#")
            .set("batch_size", 10)
            .set("base64_payload", true),
    ];
    let (bridge, mut publisher) = start(broker.port, admin, connection, routes, 2).await;
    let texts = numbered("car", 500);
    let props = PublishProperties {
        user_properties: vec![("k".into(), "1".into()), ("k".into(), "2".into())],
        content_type: Some("application/json".into()),
        ..Default::default()
    };
    for p in &texts {
        publisher
            .publish("cars/B-AB-123/state", p.clone(), props.clone())
            .await;
    }
    // Not valid UTF-8: base64 even where the route does not ask for it.
    publisher
        .publish(
            "cars/bin",
            Bytes::from_static(&[0xff, 0xfe, 0x01]),
            PublishProperties::default(),
        )
        .await;
    publisher
        .publish("raw/1", "plain text", PublishProperties::default())
        .await;
    publisher.wait_acked(Duration::from_secs(20)).await;
    let mut expected = texts.clone();
    expected.push("//4B".into());
    expected.push("cGxhaW4gdGV4dA==".into());
    assert!(all_delivered(&server, &expected, Duration::from_secs(20)).await);

    let validator = schema();
    let calls = server.calls();
    for call in &calls {
        let errors: Vec<String> = validator
            .iter_errors(&call.event)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(call.headers["authorization"], "Bearer t0ken");
        assert_eq!(call.headers["x-tenant"], "fleet-7");
        assert_eq!(call.headers["content-type"], "application/json");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(&call.body);
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(call.headers["x-mqbridge-signature"], expected.as_str());
    }
    let cars: Vec<&Call> = calls
        .iter()
        .filter(|c| c.records()[0]["route"] == "cars")
        .collect();
    // By count: 500 published at once fill batches of 50.
    assert!(cars.iter().all(|c| c.records().len() <= 50));
    assert!(
        cars.iter().any(|c| c.records().len() == 50),
        "no full batch"
    );
    let first = &cars[0].records()[0];
    assert_eq!(first["topic"], "cars/B-AB-123/state");
    assert_eq!(first["payload_encoding"], "utf8");
    assert_eq!(first["content_type"], "application/json");
    assert_eq!(
        first["user_properties"],
        serde_json::json!([["k", "1"], ["k", "2"]])
    );
    let binary = calls
        .iter()
        .flat_map(|c| c.records())
        .find(|r| r["topic"] == "cars/bin")
        .unwrap();
    assert_eq!(binary["payload_encoding"], "base64");
    let raw = calls
        .iter()
        .flat_map(|c| c.records())
        .find(|r| r["route"] == "raw")
        .unwrap();
    assert_eq!(raw["payload_encoding"], "base64");

    // By time: three messages well under batch_size go out together once max_wait passes.
    let before = server.calls().len();
    let late = numbered("late", 3);
    let sent = Instant::now();
    publisher
        .publish_payloads(|_| "cars/late".into(), &late, ACKED)
        .await;
    assert!(all_delivered(&server, &late, Duration::from_secs(10)).await);
    let calls = server.calls();
    let new: Vec<&Call> = calls[before..].iter().collect();
    assert_eq!(new.len(), 1, "one invocation for the three: {new:?}");
    assert_eq!(new[0].payloads(), late);
    assert!(
        new[0].started - sent >= Duration::from_millis(250),
        "sent before max_wait"
    );
    assert!(dead_letters(&bridge.dir.join("dead.jsonl")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_failures_are_retried_up_to_max_attempts_then_dead_lettered() {
    let broker = mosquitto();
    // "flaky" fails each request's first two tries; "broken" always answers 400.
    let tries: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let seen = tries.clone();
    let server = FunctionServer::start(move |call| {
        let first = call.payloads()[0].clone();
        if first.starts_with("broken") {
            return Reply::status(400);
        }
        let mut tries = seen.lock().unwrap();
        let n = tries.entry(first).or_insert(0);
        *n += 1;
        match *n <= 2 {
            true => Reply::status(422),
            false => Reply::ok(),
        }
    })
    .await;
    let admin = free_port();
    let routes = [
        route("flaky", "flaky/#").set("batch_size", 10),
        route("broken", "broken/#").set("batch_size", 10),
    ];
    let (bridge, mut publisher) = start(
        broker.port,
        admin,
        Connection::http(&server.url()),
        routes,
        2,
    )
    .await;
    let flaky = numbered("flaky", 100);
    let broken = numbered("broken", 40);
    publisher
        .publish_payloads(|i| format!("flaky/{}", i % 4), &flaky, ACKED)
        .await;
    publisher
        .publish_payloads(|_| "broken/x".into(), &broken, ACKED)
        .await;

    assert!(all_delivered(&server, &flaky, Duration::from_secs(30)).await);
    let dead = bridge.dir.join("dead.jsonl");
    let entries = await_dead_letters(&dead, broken.len(), Duration::from_secs(30)).await;
    assert_eq!(
        dead_payloads(&entries),
        broken.iter().map(String::as_str).collect()
    );
    for e in &entries {
        assert_eq!(e["attempts"], 3, "{e}");
        assert_eq!(e["error_kind"], "function_error");
        assert!(e["error"].as_str().unwrap().contains("400"), "{e}");
    }
    // Each broken batch was tried exactly max_attempts times.
    let broken_calls = server
        .calls()
        .iter()
        .filter(|c| c.payloads()[0].starts_with("broken"))
        .count();
    let batches = broken_calls / 3;
    assert_eq!(broken_calls, batches * 3, "{broken_calls} calls");
    assert!(
        bridge
            .metric(admin, "mqbridge_delivery_retries_total")
            .await
            > 0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_function_times_out_and_is_tried_again() {
    let broker = mosquitto();
    let calls = Arc::new(AtomicUsize::new(0));
    let count = calls.clone();
    let server = FunctionServer::start(move |_| match count.fetch_add(1, Ordering::SeqCst) {
        0 => Reply::ok().after(Duration::from_secs(30)),
        _ => Reply::ok(),
    })
    .await;
    let admin = free_port();
    let connection = Connection::http(&server.url()).set("timeout", "1s");
    let (bridge, mut publisher) =
        start(broker.port, admin, connection, [route("hang", "hang/#")], 1).await;
    let msgs = numbered("hang", 5);
    publisher
        .publish_payloads(|_| "hang/1".into(), &msgs, ACKED)
        .await;
    assert!(all_delivered(&server, &msgs, Duration::from_secs(20)).await);
    assert!(calls.load(Ordering::SeqCst) >= 2);
    assert!(
        bridge.log_text().contains("timed out"),
        "the retry names the timeout"
    );
    assert!(dead_letters(&bridge.dir.join("dead.jsonl")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_down_for_ten_seconds_loses_nothing() {
    let broker = mosquitto();
    let port = free_port();
    let admin = free_port();
    let url = format!("http://127.0.0.1:{port}/invoke");
    let routes = [route("down", "down/#")
        .set("batch_size", 20)
        .set("concurrency", 4)];
    let (bridge, mut publisher) =
        start(broker.port, admin, Connection::http(&url), routes, 1).await;
    let msgs = numbered("down", 300);
    publisher
        .publish_payloads(|i| format!("down/{}", i % 10), &msgs, ACKED)
        .await;
    let down = Instant::now();
    assert!(
        bridge
            .wait_metric(
                admin,
                "mqbridge_delivery_retries_total",
                1.0,
                Duration::from_secs(10)
            )
            .await
    );
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(down.elapsed())).await;
    assert_eq!(
        bridge
            .metric(admin, "mqbridge_messages_delivered_total")
            .await,
        0.0
    );

    let server = FunctionServer::start_on(port, |_| Reply::ok()).await;
    // Retries back off to 10 s at most.
    assert!(all_delivered(&server, &msgs, Duration::from_secs(30)).await);
    assert!(dead_letters(&bridge.dir.join("dead.jsonl")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_split_to_the_request_limit_and_a_message_too_large_alone_is_dead_lettered() {
    let broker = mosquitto();
    let server = FunctionServer::start(|_| Reply::ok()).await;
    let admin = free_port();
    let connection = Connection::http(&server.url()).set("max_request_bytes", 4096);
    let routes = [route("big", "big/#")
        .set("batch_size", 100)
        .set("max_wait", "500ms")
        .set("ordered", true)];
    let (bridge, mut publisher) = start(broker.port, admin, connection, routes, 1).await;
    let msgs: Vec<String> = (0..30)
        .map(|i| format!("big-{i}-{}", "x".repeat(900)))
        .collect();
    let huge = format!("huge-{}", "y".repeat(5000));
    let mut all = msgs.clone();
    all.insert(15, huge.clone());
    publisher
        .publish_payloads(|_| "big/1".into(), &all, ACKED)
        .await;
    assert!(all_delivered(&server, &msgs, Duration::from_secs(20)).await);
    let dead = bridge.dir.join("dead.jsonl");
    let entries = await_dead_letters(&dead, 1, Duration::from_secs(10)).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry["message"]["payload"], huge.as_str());
    assert_eq!(entry["error_kind"], "too_large");
    let calls = server.calls();
    assert!(calls.iter().all(|c| c.body.len() <= 4096));
    assert!(
        calls.len() >= 8,
        "30 records of ~1 KiB need 8+ requests: {}",
        calls.len()
    );
    // In order, and each request as full as the limit allows (four records of ~1 KiB do not fit).
    let order: Vec<String> = calls.iter().flat_map(|c| c.payloads()).collect();
    assert_eq!(order, msgs);
    assert!(calls.iter().any(|c| c.records().len() == 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_routes_keep_each_topics_order_while_topics_overlap() {
    let broker = mosquitto();
    let server = FunctionServer::start(|_| {
        Reply::ok().after(Duration::from_millis(rand::random::<u64>() % 30))
    })
    .await;
    let admin = free_port();
    let routes = [route("ordered", "ord/#")
        .set("ordered", true)
        .set("concurrency", 8)
        .set("batch_size", 5)
        .set("consumers", 1)];
    let (_bridge, mut publisher) = start(
        broker.port,
        admin,
        Connection::http(&server.url()),
        routes,
        1,
    )
    .await;
    let (topics, per) = (20, 40);
    let msgs: Vec<String> = (0..per)
        .flat_map(|n| (0..topics).map(move |t| format!("t{t}-{n}")))
        .collect();
    publisher
        .publish_payloads(|i| format!("ord/{}", i % topics), &msgs, ACKED)
        .await;
    assert!(all_delivered(&server, &msgs, Duration::from_secs(60)).await);

    let mut calls = server.calls();
    calls.sort_by_key(|c| c.started);
    let mut next: HashMap<String, usize> = HashMap::new();
    let mut spans: HashMap<String, Vec<(Instant, Instant)>> = HashMap::new();
    for call in &calls {
        for p in call.payloads() {
            let (topic, n) = p.split_once('-').unwrap();
            let n: usize = n.parse().unwrap();
            let want = next.entry(topic.to_owned()).or_insert(0);
            assert_eq!(n, *want, "topic {topic} out of order");
            *want += 1;
        }
        let topic = call.payloads()[0].split_once('-').unwrap().0.to_owned();
        spans
            .entry(topic)
            .or_default()
            .push((call.started, call.finished));
    }
    // One batch per topic at a time...
    for (topic, s) in &spans {
        for w in s.windows(2) {
            assert!(w[1].0 >= w[0].1, "two batches of {topic} overlapped");
        }
    }
    // ...while different topics ran at the same time.
    assert!(server.most_at_once() > 1, "topics never overlapped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unordered_routes_run_concurrency_invocations_at_once() {
    let broker = mosquitto();
    let server = FunctionServer::start(|_| Reply::ok().after(Duration::from_millis(100))).await;
    let admin = free_port();
    let routes = [route("loose", "loose/#")
        .set("concurrency", 4)
        .set("batch_size", 1)];
    let (_bridge, mut publisher) = start(
        broker.port,
        admin,
        Connection::http(&server.url()),
        routes,
        1,
    )
    .await;
    let msgs = numbered("loose", 40);
    publisher
        .publish_payloads(|_| "loose/same-topic".into(), &msgs, ACKED)
        .await;
    let start = Instant::now();
    assert!(all_delivered(&server, &msgs, Duration::from_secs(20)).await);
    assert_eq!(server.most_at_once(), 4, "concurrency = 4");
    // 40 calls of 100 ms, four at a time: about 1 s, not 4 s.
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_killed_mid_batch_delivers_everything_after_restart() {
    let broker = mosquitto();
    let server = FunctionServer::start(|_| Reply::ok().after(Duration::from_millis(200))).await;
    let admin = free_port();
    let routes = [route("kill", "kill/#")
        .set("batch_size", 10)
        .set("concurrency", 2)];
    let (mut bridge, mut publisher) = start(
        broker.port,
        admin,
        Connection::http(&server.url()),
        routes,
        1,
    )
    .await;
    let msgs = numbered("kill", 300);
    publisher
        .publish_payloads(|i| format!("kill/{}", i % 5), &msgs, ACKED)
        .await;
    assert!(eventually(Duration::from_secs(20), || server.delivered().len() >= 50).await);
    bridge.kill();
    let before = server.delivered().len();
    assert!(before < msgs.len(), "killed after the end");
    bridge.spawn();
    assert!(all_delivered(&server, &msgs, Duration::from_secs(60)).await);
    assert!(dead_letters(&bridge.dir.join("dead.jsonl")).is_empty());
}

/// Writes an executable Python handler into `dir`.
fn handler(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/usr/bin/env python3\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The payloads of the events a handler appended, one JSON event per line, to `path`.
fn handled(path: &std::path::Path) -> Vec<String> {
    common::complete_lines(path)
        .iter()
        .flat_map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            event["Records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["Mqtt"]["payload"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Appends each event to `out` as one line; fails (stderr, exit 3) on a payload starting
/// with "bad"; sleeps `delay` seconds first.
const RECORDING_HANDLER: &str = r#"
import json, os, sys, time
event = json.load(sys.stdin)
time.sleep(float(os.environ.get("DELAY", "0")))
payloads = [r["Mqtt"]["payload"] for r in event["Records"]]
if any(p.startswith("bg") for p in payloads):
    # A notifier left running in the background, holding stdout and stderr open.
    import subprocess
    subprocess.Popen(["sleep", "5"])
if any(p.startswith("bad") for p in payloads):
    print("cannot handle", payloads[0], file=sys.stderr)
    sys.exit(3)
with open(os.environ["OUT"], "a") as f:
    f.write(json.dumps(event) + "\n")
print("handled", len(payloads), "for", os.environ["MQBRIDGE_ROUTE"])
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_the_command_per_batch_and_dead_letters_what_it_fails() {
    let broker = mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.jsonl");
    let program = handler(dir.path(), "handler.py", RECORDING_HANDLER);
    let admin = free_port();
    let connection = exec_writing_to(&program, &out);
    let routes = [route("local", "local/#")
        .set("batch_size", 20)
        .set("max_wait", "100ms")
        .set("max_attempts", 2)];
    let (bridge, mut publisher) = start(broker.port, admin, connection, routes, 1).await;
    let good = numbered("good", 200);
    let bad = numbered("bad", 5);
    publisher
        .publish_payloads(|i| format!("local/{}", i % 3), &good, ACKED)
        .await;
    let done = eventually(Duration::from_secs(30), || {
        let got: HashSet<String> = handled(&out).into_iter().collect();
        good.iter().all(|p| got.contains(p))
    })
    .await;
    assert!(done, "handled {} of {}", handled(&out).len(), good.len());
    // A run that leaves a process behind still ends when the command exits.
    let background = numbered("bg", 3);
    let sent = std::time::Instant::now();
    publisher
        .publish_payloads(|_| "local/bg".into(), &background, ACKED)
        .await;
    let done = eventually(Duration::from_secs(10), || {
        let got: HashSet<String> = handled(&out).into_iter().collect();
        background.iter().all(|p| got.contains(p))
    })
    .await;
    let took = sent.elapsed();
    assert!(done && took < Duration::from_secs(4), "{took:?}");
    publisher
        .publish_payloads(|_| "local/bad".into(), &bad, ACKED)
        .await;
    let dead = bridge.dir.join("dead.jsonl");
    for e in await_dead_letters(&dead, bad.len(), Duration::from_secs(20)).await {
        assert_eq!(e["attempts"], 2, "{e}");
        assert_eq!(e["error_kind"], "function_error");
        let error = e["error"].as_str().unwrap();
        assert!(
            error.contains("exit status: 3") && error.contains("cannot handle"),
            "{error}"
        );
    }
    let log = bridge.log_text();
    assert!(
        log.contains("handled 20 for local"),
        "stdout goes to the log"
    );
    assert!(log.contains("the function failed"));
    // Every event the command read holds to the schema.
    let validator = schema();
    let text = std::fs::read_to_string(&out).unwrap();
    for line in text.lines() {
        assert!(validator.is_valid(&serde_json::from_str(line).unwrap()));
    }
}

/// Writes its whole environment, as one JSON object a line, to `OUT`.
const ENV_HANDLER: &str = r#"
import json, os, sys
sys.stdin.read()
with open(os.environ["OUT"], "a") as f:
    f.write(json.dumps(dict(os.environ)) + "\n")
"#;

/// The bridge's environment holds its secrets (a systemd `EnvironmentFile`): a handler gets
/// none of it unless its connection sets `inherit_env`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_handlers_see_none_of_the_bridges_environment_unless_inherited() {
    let broker = mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let program = handler(dir.path(), "env.py", ENV_HANDLER);
    let (clean, inherited) = (
        dir.path().join("clean.jsonl"),
        dir.path().join("inherited.jsonl"),
    );
    let secret = unique("mqtt-password");
    let admin = free_port();
    // The interpreter itself, not a launcher on PATH (such as a version manager's shim) that
    // would add variables of its own.
    let python = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    let python = String::from_utf8(python.stdout).unwrap().trim().to_owned();
    let connection = |out: &std::path::Path| {
        Connection::exec(&[&python, &program.display().to_string()])
            .set("env.OUT", out.display().to_string())
    };
    let route = |name: &str| Route::new(name, &format!("{name}/#"), name).set("max_wait", "50ms");
    let config = Config::new(broker.port, "env")
        .admin(admin)
        .connection("clean", connection(&clean))
        .connection("inherited", connection(&inherited).set("inherit_env", true))
        .route(route("clean"))
        .route(route("inherited"))
        .dead_letter("dead.jsonl");
    let bridge = Bridge::start_env(
        &config.text(),
        &[
            ("MQTT_PASSWORD", secret.as_str()),
            ("TENCENTCLOUD_SECRET_KEY", secret.as_str()),
        ],
    );
    bridge.wait_subscribed(0, 2);
    let mut publisher = Publisher::connect(broker.port).await;
    publisher
        .publish_payloads(|_| "clean/1".into(), &numbered("c", 1), ACKED)
        .await;
    publisher
        .publish_payloads(|_| "inherited/1".into(), &numbered("i", 1), ACKED)
        .await;
    let ran = eventually(Duration::from_secs(20), || {
        !common::complete_lines(&clean).is_empty() && !common::complete_lines(&inherited).is_empty()
    })
    .await;
    assert!(ran, "the handlers did not run; log:\n{}", bridge.log_text());
    let env = |path: &std::path::Path| -> serde_json::Map<String, serde_json::Value> {
        common::json_lines(path)[0].as_object().unwrap().clone()
    };
    let clean = env(&clean);
    let passed = [
        "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
    ];
    for (name, value) in &clean {
        assert_ne!(value, &secret, "{name} carries the bridge's secret");
        let expected = passed.contains(&name.as_str())
            || name.starts_with("LC_")
            || ["OUT", "MQBRIDGE_ROUTE"].contains(&name.as_str());
        assert!(
            expected,
            "{name} comes from the bridge's environment: {clean:?}"
        );
    }
    assert_eq!(clean["MQBRIDGE_ROUTE"], "clean");
    assert!(clean.contains_key("PATH"), "PATH is passed on: {clean:?}");
    let inherited = env(&inherited);
    assert_eq!(
        inherited["MQTT_PASSWORD"],
        secret.as_str(),
        "inherit_env passes it on"
    );
    assert_eq!(inherited["MQBRIDGE_ROUTE"], "inherited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_timeout_kills_the_process_group_and_runs_again() {
    let broker = mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.jsonl");
    let pids = dir.path().join("pids");
    // The first run starts a grandchild and hangs; later runs record the event.
    let program = handler(
        dir.path(),
        "hang.py",
        &format!(
            r#"
import os, subprocess, sys, time
event = sys.stdin.read()
if not os.path.exists("{pids}"):
    child = subprocess.Popen(["sleep", "60"])
    open("{pids}", "w").write(str(child.pid))
    time.sleep(60)
open("{out}", "a").write(event.strip() + "\n")
"#,
            pids = pids.display(),
            out = out.display()
        ),
    );
    let admin = free_port();
    let connection = Connection::exec(&[&program.display().to_string()]).set("timeout", "1s");
    let (bridge, mut publisher) =
        start(broker.port, admin, connection, [route("slow", "slow/#")], 1).await;
    let msgs = numbered("slow", 3);
    publisher
        .publish_payloads(|_| "slow/1".into(), &msgs, ACKED)
        .await;
    let done = eventually(Duration::from_secs(20), || {
        let got: HashSet<String> = handled(&out).into_iter().collect();
        msgs.iter().all(|p| got.contains(p))
    })
    .await;
    assert!(done);
    let grandchild: i32 = std::fs::read_to_string(&pids).unwrap().parse().unwrap();
    // Gone, or a zombie left for a parent that does not reap.
    let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
    let alive = stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'));
    assert!(!alive, "the hung run's grandchild survived the timeout");
    assert!(bridge.log_text().contains("was killed"));
    assert!(dead_letters(&bridge.dir.join("dead.jsonl")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_at_most_max_processes_at_once() {
    let broker = mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.jsonl");
    let program = handler(dir.path(), "handler.py", RECORDING_HANDLER);
    let spans = dir.path().join("spans");
    let wrapper = handler(
        dir.path(),
        "timed.py",
        &format!(
            r#"
import os, subprocess, sys, time
start = time.time()
subprocess.run(["{program}"], stdin=sys.stdin, check=True)
open("{spans}", "a").write(f"{{start}} {{time.time()}}\n")
"#,
            program = program.display(),
            spans = spans.display()
        ),
    );
    let admin = free_port();
    let connection = exec_writing_to(&wrapper, &out)
        .set("max_processes", 2)
        .set("env.DELAY", "0.3");
    let routes = [route("bounded", "bounded/#")
        .set("batch_size", 1)
        .set("concurrency", 8)];
    let (bridge, mut publisher) = start(broker.port, admin, connection, routes, 1).await;
    let msgs = numbered("bounded", 12);
    publisher
        .publish_payloads(|i| format!("bounded/{i}"), &msgs, ACKED)
        .await;
    assert!(
        eventually(Duration::from_secs(30), || handled(&out).len()
            >= msgs.len())
        .await
    );
    let text = std::fs::read_to_string(&spans).unwrap();
    let spans: Vec<(f64, f64)> = text
        .lines()
        .map(|l| {
            let (a, b) = l.split_once(' ').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    let most = spans
        .iter()
        .map(|&(s, _)| spans.iter().filter(|&&(a, b)| a <= s && s < b).count())
        .max()
        .unwrap();
    assert_eq!(most, 2, "runs at once: {spans:?}");
    drop(bridge);
}

#[test]
fn a_missing_exec_command_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    let text = config(
        1883,
        free_port(),
        Connection::exec(&["./handlers/battery"]),
        [route("cars", "cars/#")],
    )
    .text();
    std::fs::write(&path, text).unwrap();
    for command in ["validate", "run"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mqbridge"))
            .args([command, "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{command}: {text}");
        let missing = format!("{}/handlers/battery does not exist", dir.path().display());
        assert!(
            text.contains("connection \"fn\", field `command`"),
            "{command}: {text}"
        );
        assert!(text.contains(&missing), "{command}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_function_neither_stalls_keep_alive_nor_holds_more_than_the_window() {
    let broker = mosquitto();
    let slow = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = slow.clone();
    let server = FunctionServer::start(move |_| match flag.load(Ordering::SeqCst) {
        true => Reply::ok().after(Duration::from_secs(6)),
        false => Reply::ok(),
    })
    .await;
    let admin = free_port();
    let routes = [route("slow", "slow/#")
        .set("batch_size", 5)
        .set("concurrency", 1)
        .set("consumers", 1)];
    let text = config(broker.port, admin, Connection::http(&server.url()), routes)
        .mqtt("keep_alive", "5s")
        .mqtt("receive_maximum", 20)
        .text();
    let bridge = Bridge::start(&text);
    bridge.wait_subscribed(0, 1);
    let mut publisher = Publisher::connect(broker.port).await;
    let msgs = numbered("slow", 300);
    publisher
        .publish_payloads(|i| format!("slow/{}", i % 10), &msgs, ACKED)
        .await;
    // Three keep-alive periods with every call taking longer than one.
    tokio::time::sleep(Duration::from_secs(16)).await;
    assert_eq!(
        bridge
            .metric(admin, "mqbridge_mqtt_disconnects_total")
            .await,
        0.0,
        "{}",
        bridge.log_text()
    );
    let held = bridge.metric(admin, "mqbridge_inflight_messages_max").await;
    assert!(held >= 20.0, "the window never filled: {held}");
    assert!(held <= 29.0, "held {held} messages with a window of 20");
    assert!(
        server.delivered().len() < msgs.len(),
        "not slow enough to test"
    );

    slow.store(false, Ordering::SeqCst);
    assert!(all_delivered(&server, &msgs, Duration::from_secs(60)).await);
    assert_eq!(
        bridge
            .metric(admin, "mqbridge_mqtt_disconnects_total")
            .await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_published_to_mqtt_are_not_taken_back() {
    let broker = mosquitto();
    // Everything fails for good in the function: dead letters go to an MQTT topic that a
    // second route of the same bridge subscribes to.
    let server = FunctionServer::start(|_| Reply::status(400)).await;
    let admin = free_port();
    let routes = [
        route("cars", "cars/#").set("max_attempts", 1),
        Route::new("all_dead", "dead/#", "out"),
    ];
    let text = base(broker.port, admin, Connection::http(&server.url()), routes)
        .connection("out", Connection::file("out.jsonl"))
        .set("dead_letter.topic", "dead/letters")
        .text();
    let bridge = Bridge::start(&text);
    bridge.wait_subscribed(0, 2);
    let mut watcher = common::mqtt::Subscriber::connect(broker.port, "dead/#").await;
    let mut publisher = Publisher::connect(broker.port).await;
    publisher
        .publish_payloads(|i| format!("cars/{i}"), &numbered("c", 5), ACKED)
        .await;
    for _ in 0..5 {
        let (topic, _) = tokio::time::timeout(Duration::from_secs(10), watcher.messages.recv())
            .await
            .expect("a dead letter on the topic")
            .unwrap();
        assert_eq!(topic, "dead/letters");
    }
    assert!(
        bridge
            .wait_metric(
                admin,
                "mqbridge_messages_skipped_total",
                5.0,
                Duration::from_secs(10)
            )
            .await,
        "{}",
        bridge.log_text()
    );
    assert_eq!(
        common::file_payloads(&bridge.dir.join("out.jsonl")).len(),
        0
    );
}
