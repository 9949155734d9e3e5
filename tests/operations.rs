//! Operating a running bridge through its admin API and CLI, against real mosquitto: route
//! states, pause and resume with messages flowing, the token, readiness, reload of changed,
//! added, removed and untouched routes, an invalid reload.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::PublishProperties;

use common::bridge::{cli, http_request, http_request_with};
use common::config::{Config, Connection, Route};
use common::function::{FunctionServer, Reply};
use common::mqtt::Publisher;
use common::{
    eventually, file_payloads, free_port, mosquitto, mosquitto_log, mosquitto_verbose, unique,
    Bridge,
};

/// Runs the CLI: exit code and output (stdout then stderr).
fn admin_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// A config with file connections `a` and `b` (a.jsonl, b.jsonl), a dead-letter file and no
/// route yet.
fn config(mqtt_port: u16, admin_port: u16, prefix: &str) -> Config {
    Config::new(mqtt_port, "ops")
        .mqtt("client_id_prefix", prefix)
        .admin(admin_port)
        .connection("a", Connection::file("a.jsonl"))
        .connection("b", Connection::file("b.jsonl"))
        .dead_letter("dead.jsonl")
}

async fn routes_json(admin: u16) -> serde_json::Value {
    let (status, body) = http_request(admin, "GET", "/routes", None).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn find<'a>(overview: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    overview["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no route {name} in {overview}"))
}

fn lines(path: &Path) -> usize {
    file_payloads(path).values().sum()
}

/// How many times mosquitto accepted a connection from `client_id`.
fn connections_of(broker: &common::Server, client_id: &str) -> usize {
    mosquitto_log(broker)
        .lines()
        .filter(|l| l.contains("New client connected") && l.contains(&format!(" as {client_id} ")))
        .count()
}

/// Publishes `n` messages `{prefix}-{i}` to `topic(i)` at about `per_second`.
fn publish_paced(
    mut publisher: Publisher,
    prefix: &'static str,
    n: usize,
    per_second: u64,
    topic: impl Fn(usize) -> String + Send + 'static,
) -> tokio::task::JoinHandle<Publisher> {
    tokio::spawn(async move {
        let start = Instant::now();
        for i in 0..n {
            let due = start + Duration::from_micros(i as u64 * 1_000_000 / per_second);
            tokio::time::sleep_until(due.into()).await;
            publisher
                .publish(
                    &topic(i),
                    format!("{prefix}-{i}"),
                    PublishProperties::default(),
                )
                .await;
        }
        publisher.wait_acked(Duration::from_secs(30)).await;
        publisher
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_keeps_the_sessions_and_resume_delivers_everything() {
    let broker = mosquitto_verbose();
    let admin = free_port();
    let prefix = unique("ops");
    // `flow` is paused while messages stream in, `quiet` while idle (its consumer waiting in a
    // read); `witness` runs beside them and proves that the broker delivered what was published.
    let text = config(broker.port, admin, &prefix)
        .connection("c", Connection::file("c.jsonl"))
        .route(Route::new("flow", "flow/#", "a").set("consumers", 2))
        .route(Route::new("witness", "witness/#", "b"))
        .route(Route::new("quiet", "quiet/#", "c"))
        .text();
    let bridge = Bridge::start(&text);
    bridge.wait_subscribed(0, 4);
    let out = bridge.dir.join("a.jsonl");
    let witnessed = bridge.dir.join("b.jsonl");
    let quiet = bridge.dir.join("c.jsonl");
    let publisher = Publisher::connect(broker.port).await;
    let sending = publish_paced(publisher, "flow", 3000, 1000, |i| format!("flow/{}", i % 8));
    assert!(eventually(Duration::from_secs(10), || lines(&out) > 200).await);

    for route in ["flow", "quiet"] {
        let (code, text) = cli(&["pause", route, "--admin", &admin_url(admin)]);
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("paused"), "{text}");
    }
    let mut publisher = sending.await.unwrap();
    // Published a second after the pause was answered: none of it may be delivered before
    // resume, not even what a read under way at the pause brings.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held = lines(&out);
    publisher
        .publish_numbered(0..200, |i| format!("flow/{}", i % 8))
        .await;
    publisher
        .publish_numbered(0..200, |i| format!("quiet/{}", i % 8))
        .await;
    publisher.wait_acked(Duration::from_secs(10)).await;
    // The witness is published after every message of `flow`: once the other route has it,
    // the broker has handed on everything published before it.
    publisher
        .publish("witness/1", "witness", PublishProperties::default())
        .await;
    publisher.wait_acked(Duration::from_secs(10)).await;
    assert!(eventually(Duration::from_secs(10), || lines(&witnessed) == 1).await);
    assert_eq!(lines(&out), held, "delivered while paused");
    assert_eq!(lines(&quiet), 0, "delivered while paused");
    let overview = routes_json(admin).await;
    let flow = find(&overview, "flow");
    assert_eq!(flow["state"], "paused", "{flow}");
    for consumer in flow["consumers"].as_array().unwrap() {
        assert_eq!(consumer["connected"], true, "{consumer}");
    }
    let (code, table) = cli(&["status", "--admin", &admin_url(admin)]);
    assert_eq!(code, 0, "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("flow") && l.contains("paused")),
        "{table}"
    );

    for route in ["flow", "quiet"] {
        let (code, text) = cli(&["resume", route, "--admin", &admin_url(admin)]);
        assert_eq!(code, 0, "{text}");
    }
    assert!(eventually(Duration::from_secs(20), || lines(&quiet) >= 200).await);
    assert!(eventually(Duration::from_secs(20), || lines(&out) >= 3200).await);
    let payloads = file_payloads(&out);
    for i in 0..3000 {
        assert_eq!(payloads.get(&format!("flow-{i}")), Some(&1), "flow-{i}");
    }
    let quietly = file_payloads(&quiet);
    for i in 0..200 {
        assert_eq!(payloads.get(&format!("msg-{i}")), Some(&1), "msg-{i}");
        assert_eq!(quietly.get(&format!("msg-{i}")), Some(&1), "msg-{i}");
    }
    // The sessions were kept: each connection of the pool of `flow` (the routes delivering to
    // `a`) connected once, its parking connection too.
    for id in ["a-1", "a-2", "a-parked"] {
        assert_eq!(
            connections_of(&broker, &format!("{prefix}.{id}")),
            1,
            "{id}"
        );
    }
    let overview = routes_json(admin).await;
    let flow = find(&overview, "flow");
    assert_eq!(flow["state"], "running", "{flow}");
    assert_eq!(flow["delivered"], 3200);
    assert_eq!(flow["in_flight"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_protects_what_changes_something() {
    let broker = mosquitto();
    let admin = free_port();
    let prefix = unique("ops");
    let text = config(broker.port, admin, &prefix)
        .admin_key("token", "s3cret")
        .route(Route::new("r", "r/#", "a"))
        .text();
    let bridge = Bridge::start(&text);
    bridge.wait_subscribed(0, 1);
    for path in ["/routes/r/pause", "/routes/r/resume", "/reload"] {
        let (status, body) = http_request(admin, "POST", path, None).await;
        assert_eq!(status, 401, "{path}: {body}");
        let (status, _) = http_request(admin, "POST", path, Some("wrong")).await;
        assert_eq!(status, 401, "{path}");
    }
    assert_eq!(routes_json(admin).await["routes"][0]["state"], "running");
    let (status, body) = http_request(admin, "POST", "/routes/r/pause", Some("s3cret")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(routes_json(admin).await["routes"][0]["state"], "paused");
    let (code, text) = cli(&["resume", "r", "--admin", &admin_url(admin)]);
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("admin token"), "{text}");
    let (status, _) = http_request(admin, "POST", "/routes/nope/pause", Some("s3cret")).await;
    assert_eq!(status, 404);
    assert!(!bridge.log_text().contains("s3cret"));
}

/// What a web page open in the operator's browser can send: a cross-site form POST (no CORS
/// preflight) and, through DNS rebinding, requests under its own host name. Without a token,
/// both are refused, while the page itself, the CLI and curl keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_attacks_on_the_admin_api_are_refused() {
    const REFUSED: &str = "mqbridge_admin_requests_refused_total";
    let broker = mosquitto();
    let admin = free_port();
    let text = config(broker.port, admin, &unique("ops"))
        .admin_key("allowed_hosts", vec!["bridge.plant.test"])
        .route(Route::new("r", "r/#", "a"))
        .text();
    let bridge = Bridge::start(&text);
    bridge.wait_subscribed(0, 1);
    let here = format!("127.0.0.1:{admin}");
    let form = [
        ("Host", here.as_str()),
        ("Origin", "http://evil.example"),
        ("Sec-Fetch-Site", "cross-site"),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    for path in ["/routes/r/pause", "/reload"] {
        let (status, body) = http_request_with(admin, "POST", path, &form).await;
        assert_eq!(status, 403, "cross-site POST {path}: {body}");
        assert!(body.contains("another site"), "{body}");
    }
    // An older browser that sends Origin only, from another port of the same host.
    let other_port = [("Host", here.as_str()), ("Origin", "http://127.0.0.1:8000")];
    let (status, _) = http_request_with(admin, "POST", "/routes/r/pause", &other_port).await;
    assert_eq!(status, 403);
    let rebound = format!("evil.example:{admin}");
    for (method, path) in [
        ("GET", "/routes"),
        ("GET", "/metrics"),
        ("POST", "/routes/r/pause"),
    ] {
        let (status, body) =
            http_request_with(admin, method, path, &[("Host", rebound.as_str())]).await;
        assert_eq!(status, 403, "{method} {path} for a foreign host: {body}");
        assert!(body.contains("allowed_hosts"), "{body}");
    }
    let overview = routes_json(admin).await;
    assert_eq!(find(&overview, "r")["state"], "running", "{overview}");
    assert!(overview["last_reload"].is_null(), "{overview}");
    let refused = |reason: &'static str| {
        let label = format!("reason=\"{reason}\"");
        let bridge = &bridge;
        async move { bridge.metric_where(admin, REFUSED, &label).await }
    };
    assert_eq!(refused("cross_site").await, 3.0);
    assert_eq!(refused("host").await, 3.0);

    // The name the operator allows, the status page's own origin, the CLI and curl.
    let allowed = format!("Bridge.Plant.Test:{admin}");
    let (status, _) =
        http_request_with(admin, "GET", "/routes", &[("Host", allowed.as_str())]).await;
    assert_eq!(status, 200);
    let origin = format!("http://{here}");
    let page = [
        ("Host", here.as_str()),
        ("Origin", origin.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
    ];
    let (status, body) = http_request_with(admin, "POST", "/routes/r/pause", &page).await;
    assert_eq!(status, 200, "{body}");
    let (code, text) = cli(&["resume", "r", "--admin", &admin_url(admin)]);
    assert_eq!(code, 0, "{text}");
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .arg("-sf")
            .args(args)
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    curl(&["-X", "POST", &format!("http://{here}/routes/r/pause")]);
    assert_eq!(find(&routes_json(admin).await, "r")["state"], "paused");
    let scrape = curl(&[&format!("http://localhost:{admin}/metrics")]);
    assert!(scrape.contains(REFUSED), "{scrape}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_destination() {
    let broker = mosquitto();
    let port = free_port();
    let server = FunctionServer::start_on(port, |_| Reply::ok()).await;
    let admin = free_port();
    let prefix = unique("ops");
    let text = Config::new(broker.port, "ops")
        .mqtt("client_id_prefix", prefix.as_str())
        .admin(admin)
        .admin_key("failing_after", "2s")
        .admin_key("check_interval", "1s")
        .connection("fn", Connection::http(&server.url()))
        .route(Route::new("cars", "cars/#", "fn"))
        .text();
    let bridge = Bridge::start(&text);
    bridge.wait_subscribed(0, 1);
    let ready = || async { http_request(admin, "GET", "/readyz", None).await };
    assert!(eventually_async(Duration::from_secs(10), || async { ready().await.0 == 200 }).await);
    assert_eq!(http_request(admin, "GET", "/healthz", None).await.0, 200);

    server.stop();
    let mut publisher = Publisher::connect(broker.port).await;
    publisher
        .publish("cars/1", "c-1", PublishProperties::default())
        .await;
    let not_ready =
        eventually_async(Duration::from_secs(15), || async { ready().await.0 == 503 }).await;
    assert!(not_ready);
    let (_, body) = ready().await;
    assert!(body.contains("route \"cars\""), "{body}");
    assert!(body.contains("connection \"fn\""), "{body}");
    let cars = find(&routes_json(admin).await, "cars").clone();
    assert_eq!(cars["state"], "failing", "{cars}");
    assert!(cars["last_error"]["message"].as_str().is_some(), "{cars}");

    let server = FunctionServer::start_on(port, |_| Reply::ok()).await;
    assert!(eventually_async(Duration::from_secs(20), || async { ready().await.0 == 200 }).await);
    assert!(
        eventually(Duration::from_secs(5), || server
            .delivered()
            .contains_key("c-1"))
        .await
    );
}

async fn eventually_async<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_restarts_only_what_changed() {
    let broker = mosquitto_verbose();
    let admin = free_port();
    let prefix = unique("ops");
    let before = config(broker.port, admin, &prefix)
        .route(Route::new("same", "same/#", "a"))
        .route(Route::new("changed", "changed/#", "b").set("batch_size", 100))
        .route(Route::new("removed", "removed/#", "b"));
    // The reloaded file, with the batch size of "changed".
    let after = |batch_size: i64| {
        config(broker.port, admin, &prefix)
            .route(Route::new("same", "same/#", "a"))
            .route(Route::new("changed", "changed/#", "b").set("batch_size", batch_size))
            .route(Route::new("added", "added/#", "b"))
    };
    let mut bridge = Bridge::start(&before.text());
    bridge.wait_subscribed(0, 3);
    let a = bridge.dir.join("a.jsonl");
    let b = bridge.dir.join("b.jsonl");
    let publisher = Publisher::connect(broker.port).await;
    let topics = ["same", "changed", "removed", "added"];
    let sending = publish_paced(publisher, "m", 4000, 1000, move |i| {
        format!("{}/{}", topics[i % 4], i % 5)
    });
    assert!(eventually(Duration::from_secs(10), || lines(&a) > 100).await);
    // The published payloads are m-{i}; route of i is topics[i % 4]. "changed" is paused: it
    // comes back paused, and delivers once resumed.
    assert_eq!(
        http_request(admin, "POST", "/routes/changed/pause", None)
            .await
            .0,
        200
    );
    std::fs::write(&bridge.config, after(50).text()).unwrap();
    let (code, text) = cli(&["reload", "--admin", &admin_url(admin)]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("added added; restarted changed; removed removed; unchanged same"),
        "{text}"
    );
    let sent_at_reload = Instant::now();
    assert_eq!(
        find(&routes_json(admin).await, "changed")["state"],
        "paused"
    );
    assert_eq!(
        http_request(admin, "POST", "/routes/changed/resume", None)
            .await
            .0,
        200
    );
    sending.await.unwrap();
    let same: Vec<String> = (0..4000)
        .filter(|i| i % 4 == 0)
        .map(|i| format!("m-{i}"))
        .collect();
    let changed: Vec<String> = (0..4000)
        .filter(|i| i % 4 == 1)
        .map(|i| format!("m-{i}"))
        .collect();
    assert!(
        eventually(Duration::from_secs(20), || {
            let got = file_payloads(&a);
            same.iter().all(|p| got.contains_key(p))
        })
        .await
    );
    let all_changed = eventually(Duration::from_secs(20), || {
        let got = file_payloads(&b);
        changed.iter().all(|p| got.contains_key(p))
    })
    .await;
    let got = file_payloads(&b);
    let missing: Vec<&String> = changed.iter().filter(|p| !got.contains_key(*p)).collect();
    assert!(
        all_changed,
        "{} of \"changed\"'s messages missing, from {:?} to {:?}\n{}",
        missing.len(),
        missing.first(),
        missing.last(),
        bridge.log_text()
    );
    // Untouched: its shared connection never reconnected, nothing lost or repeated.
    assert_eq!(connections_of(&broker, &format!("{prefix}.a-1")), 1);
    let got = file_payloads(&a);
    assert!(same.iter().all(|p| got.get(p) == Some(&1)));
    assert_eq!(got.len(), same.len());
    // Changed: restarted on the same shared connection, nothing lost. It was stopped while
    // paused: what it held then (what reached it before its subscription moved to parking) was
    // given up, and the connection that brought it connected again once, so that the broker
    // sent it again.
    let connects = connections_of(&broker, &format!("{prefix}.b-1"));
    assert!((1..=2).contains(&connects), "{connects} connections");
    // Added: receives what was published after it started.
    let added_after: Vec<String> = {
        let log = file_payloads(&b);
        (0..4000)
            .filter(|i| i % 4 == 3)
            .map(|i| format!("m-{i}"))
            .filter(|p| log.contains_key(p))
            .collect()
    };
    assert!(!added_after.is_empty(), "the added route delivered nothing");
    assert!(sent_at_reload.elapsed() > Duration::ZERO);
    let overview = routes_json(admin).await;
    let names: Vec<&str> = overview["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["added", "changed", "same"]);
    assert_eq!(overview["last_reload"]["ok"], true);

    // SIGHUP reloads too: an invalid file keeps the running configuration.
    let broken = after(0).text();
    std::fs::write(&bridge.config, broken).unwrap();
    common::bridge::send_signal(bridge.pid(), "HUP");
    assert!(
        eventually_async(Duration::from_secs(10), || async {
            routes_json(admin).await["last_reload"]["ok"] == false
        })
        .await
    );
    let overview = routes_json(admin).await;
    let detail = overview["last_reload"]["detail"].as_str().unwrap();
    assert!(detail.contains("batch_size"), "{detail}");
    assert_eq!(overview["routes"].as_array().unwrap().len(), 3);
    let (status, body) = http_request(admin, "POST", "/reload", None).await;
    assert_eq!(status, 422, "{body}");
    assert!(bridge.log_text().contains("reload refused"));
    assert_eq!(bridge.stop(), Some(0));
}

#[test]
fn check_reports_each_item_and_fails_on_any() {
    let broker = common::mosquitto_refusing("allowed/#");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    let closed = free_port();
    let good_only = Config::new(broker.port, "check")
        .connection("out", Connection::file("out.jsonl"))
        .route(Route::new("good", "allowed/#", "out"));
    let text = good_only
        .clone()
        .connection(
            "fn",
            Connection::http(&format!("http://127.0.0.1:{closed}/invoke")),
        )
        .route(Route::new("bad", "denied/#", "fn"))
        .text();
    std::fs::write(&path, &text).unwrap();
    let (code, out) = cli(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let line = |start: &str| {
        out.lines()
            .find(|l| l.contains(start))
            .unwrap_or_else(|| panic!("no line with {start}:\n{out}"))
            .to_owned()
    };
    assert!(line("mqtt:").starts_with("ok"), "{out}");
    assert!(
        line("route \"good\" filter \"allowed/#\"").starts_with("ok"),
        "{out}"
    );
    let bad = line("route \"bad\" filter \"denied/#\"");
    assert!(
        bad.starts_with("FAIL") && bad.contains("NotAuthorized"),
        "{out}"
    );
    assert!(line("connection \"out\"").starts_with("ok"), "{out}");
    let unreachable = line("connection \"fn\"");
    assert!(
        unreachable.starts_with("FAIL") && unreachable.contains(&closed.to_string()),
        "{out}"
    );
    assert!(out.contains("2 of 5 checks failed"), "{out}");

    // All good: exit 0.
    std::fs::write(&path, good_only.text()).unwrap();
    let (code, out) = cli(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let broker = mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    let text = config(broker.port, free_port(), &unique("json"))
        .route(Route::new("r", "r/#", "a"))
        .text();
    std::fs::write(&path, text).unwrap();
    let log = dir.path().join("bridge.log");
    let mut child = common::die_with_parent(&mut Command::new(env!("CARGO_BIN_EXE_mqbridge")))
        .args(["run", "--log-format", "json", "--config"])
        .arg(&path)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let subscribed = eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("subscribed")
    })
    .await;
    common::bridge::send_signal(child.id(), "TERM");
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(subscribed, "{text}");
    for line in text.lines() {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            entry["level"].is_string() && entry["message"].is_string(),
            "{line}"
        );
    }
    assert!(
        text.lines().any(|l| l.contains("\"route\":\"r\"")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_reads_a_rotated_secret_and_restarts_only_the_routes_of_its_connection() {
    let broker = mosquitto_verbose();
    let server = FunctionServer::start(|_| Reply::ok()).await;
    let admin = free_port();
    let prefix = unique("ops");
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("token");
    std::fs::write(&token, "one\n").unwrap();
    let text = config(broker.port, admin, &prefix)
        .connection(
            "fn",
            Connection::http(&server.url()).set("bearer_token_file", token.to_str().unwrap()),
        )
        .route(Route::new("to_fn", "fn/#", "fn"))
        .route(Route::new("to_file", "file/#", "a"))
        .text();
    let bridge = Bridge::start(&text);
    bridge.wait_subscribed(0, 2);
    let mut publisher = Publisher::connect(broker.port).await;
    publisher
        .publish("fn/1", "before", PublishProperties::default())
        .await;
    assert!(
        eventually(Duration::from_secs(10), || server
            .delivered()
            .contains_key("before"))
        .await
    );

    std::fs::write(&token, "two\n").unwrap();
    let (code, out) = cli(&["reload", "--admin", &admin_url(admin)]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("restarted to_fn; removed none; unchanged to_file"),
        "{out}"
    );
    publisher
        .publish("fn/1", "after", PublishProperties::default())
        .await;
    assert!(
        eventually(Duration::from_secs(10), || server
            .delivered()
            .contains_key("after"))
        .await
    );
    let token_of = |payload: &str| {
        server
            .calls()
            .iter()
            .find(|c| c.payloads() == [payload])
            .map(|c| c.headers["authorization"].to_str().unwrap().to_owned())
    };
    assert_eq!(token_of("before").as_deref(), Some("Bearer one"));
    assert_eq!(token_of("after").as_deref(), Some("Bearer two"));
    // The routes read through the connections they share with the routes to their
    // destination: the restarted route's stayed up.
    assert_eq!(connections_of(&broker, &format!("{prefix}.a-1")), 1);
    assert_eq!(connections_of(&broker, &format!("{prefix}.fn-1")), 1);
}
