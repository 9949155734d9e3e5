//! Kafka's security settings on real servers, set through the connection's `librdkafka` table
//! as the README shows them, for a route (the producer) and a downlink (the consumer, which
//! keeps the security settings while it leaves out the producer-only ones): TLS with client
//! certificates (mutual TLS), and SASL/SCRAM-SHA-256 over TLS with the password from the
//! environment.
//!
//! tansu 0.6 takes `--cert`/`--key` but serves plain TCP (its TLS acceptor is built and never
//! used), so TLS is terminated in front of it by stunnel (Debian's `stunnel4`); tansu advertises
//! stunnel's port, so every connection librdkafka makes goes through TLS. SCRAM is tansu's own
//! (`--authentication`); its users live in the storage, and the in-memory storage takes them only
//! through a broker that already authenticates, so the SCRAM broker keeps them in SQLite: the
//! user is created on a first run without authentication, and the broker runs again on the same
//! file with it.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use common::config::{Config, Connection, Downlink, Route};
use common::device::Device;
use common::kafka::{create_topic_with, reader};
use common::mqtt::Publisher;
use common::{certs, die_with_parent, free_port, mosquitto, unique, wait_port, Bridge, Server};

/// The folder of a TLS front: the CA, the server's certificate and a client's.
fn certificates() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    certs::server_set(dir.path());
    certs::signed(dir.path(), "ca", "client", "mqbridge", false);
    certs::readable(dir.path());
    dir
}

/// stunnel in front of the Kafka broker on `plain`, on the TLS port `tls`, with the
/// certificates of `dir`, requiring a client certificate of the CA when `mutual`.
fn stunnel(dir: tempfile::TempDir, plain: u16, tls: u16, mutual: bool) -> Server {
    let d = dir.path().display();
    let require = if mutual {
        "requireCert = yes\nverifyChain = yes\n"
    } else {
        ""
    };
    let conf = format!(
        "foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{tls}\nconnect = 127.0.0.1:{plain}\n\
         cert = {d}/server.pem\nkey = {d}/server.key\nCAfile = {d}/ca.pem\n{require}"
    );
    std::fs::write(dir.path().join("stunnel.conf"), conf).unwrap();
    let child = die_with_parent(&mut Command::new("stunnel"))
        .arg(dir.path().join("stunnel.conf"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stunnel.log")).unwrap())
        .spawn()
        .expect("stunnel (Debian's stunnel4; scripts/test installs it)");
    wait_port(tls, Duration::from_secs(10));
    Server {
        child,
        port: tls,
        dir,
    }
}

/// librdkafka's mutual TLS settings with the client certificate of `dir`.
fn tls_settings(dir: &Path) -> Vec<(&'static str, String)> {
    let d = dir.display();
    vec![
        ("security.protocol", "ssl".into()),
        ("ssl.ca.location", format!("{d}/ca.pem")),
        ("ssl.certificate.location", format!("{d}/client.pem")),
        ("ssl.key.location", format!("{d}/client.key")),
    ]
}

/// librdkafka's SASL/SCRAM-SHA-256 over TLS settings (the server checked against the CA of
/// `dir`), with `password` as it is written in the config.
fn scram_settings(dir: &Path, password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("security.protocol", "sasl_ssl".into()),
        ("ssl.ca.location", format!("{}/ca.pem", dir.display())),
        ("sasl.mechanism", "SCRAM-SHA-256".into()),
        ("sasl.username", "mqbridge".into()),
        ("sasl.password", password.into()),
    ]
}

fn client(settings: &[(&'static str, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in settings {
        config.set(*key, value);
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_over_mutual_tls_carries_both_ways() {
    let broker = mosquitto();
    let (plain, tls) = (free_port(), free_port());
    let _kafka = common::tansu(plain, tls);
    let stunnel = stunnel(certificates(), plain, tls, true);
    let settings = tls_settings(stunnel.dir.path());
    let bridge = carries_both_ways(&broker, tls, &settings, &settings, &[]).await;
    let stunnel_log =
        std::fs::read_to_string(stunnel.dir.path().join("stunnel.log")).unwrap_or_default();
    assert!(
        stunnel_log.contains("Certificate accepted") || stunnel_log.contains("verify ok"),
        "stunnel never checked a client certificate:\n{stunnel_log}"
    );
    drop(bridge);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_over_sasl_scram_and_tls_carries_both_ways() {
    let broker = mosquitto();
    let dir = certificates();
    let db = format!("sqlite://{}/tansu.db", dir.path().display());
    let password = unique("scram-secret");
    // The user, created on a broker without authentication, kept in the file.
    let first = free_port();
    let setup = common::tansu_with(first, first, &db, &[]);
    let created = Command::new(common::tansu_bin())
        .args(["user", "create", "--broker"])
        .arg(format!("tcp://127.0.0.1:{first}"))
        .args(["--mechanism", "scram256", "mqbridge", &password])
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "tansu user create: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    drop(setup);
    let (plain, tls) = (free_port(), free_port());
    let _kafka = common::tansu_with(plain, tls, &db, &["--authentication"]);
    let stunnel = stunnel(dir, plain, tls, false);
    // The test's own clients know the password; the bridge reads it from its environment.
    let ours = scram_settings(stunnel.dir.path(), &password);
    let bridges = scram_settings(stunnel.dir.path(), "${KAFKA_PASSWORD}");
    let bridge = carries_both_ways(
        &broker,
        tls,
        &ours,
        &bridges,
        &[("KAFKA_PASSWORD", password.as_str())],
    )
    .await;
    assert!(
        !bridge.log_text().contains(&password),
        "the password reached the log"
    );

    // A wrong password is refused, and `check` says so.
    let wrong = scram_settings(stunnel.dir.path(), "not-the-password");
    let config = bridge_config(broker.port, tls, &wrong, "up", "down").text();
    let file = stunnel.dir.path().join("wrong.toml");
    std::fs::write(&file, config).unwrap();
    let (code, text) = common::bridge::cli(&["check", "--config", file.to_str().unwrap()]);
    assert_ne!(code, 0, "{text}");
    let kafka = text
        .lines()
        .find(|l| l.contains("connection \"kafka\""))
        .unwrap_or_else(|| panic!("no line for the connection: {text}"));
    assert!(
        kafka.starts_with("FAIL") && kafka.contains("SASL authentication error"),
        "the check says the password was refused: {text}"
    );
    assert!(!text.contains("not-the-password"), "{text}");

    // Run with it, the downlink's consumer says why it reads nothing rather than `running`.
    let admin = free_port();
    let config = bridge_config(broker.port, tls, &wrong, "up", "down").admin(admin);
    let bridge = Bridge::start(&config.text());
    wait_port(admin, Duration::from_secs(10));
    let mut status = serde_json::Value::Null;
    for _ in 0..300 {
        status = common::bridge::flow_status(admin, "downlinks", "down").await;
        if status["state"] == "failing" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reason = status["reason"].as_str().unwrap_or_default();
    assert!(
        status["state"] == "failing" && reason.contains("SASL authentication error"),
        "the downlink's status names the refused login: {status}\nlog:\n{}",
        bridge.log_text()
    );
    assert!(
        !reason.contains("not-the-password") && !bridge.log_text().contains("not-the-password")
    );
}

/// A config with a route `up` (`secure/#` → Kafka topic `up`) and a downlink `down` (Kafka topic
/// `down` → `devices/{key}/commands`) on the Kafka connection at 127.0.0.1:`port` with
/// `settings`.
fn bridge_config(
    mqtt_port: u16,
    port: u16,
    settings: &[(&'static str, String)],
    up: &str,
    down: &str,
) -> Config {
    let kafka = settings.iter().fold(
        Connection::kafka(&format!("127.0.0.1:{port}")),
        |kafka, (k, v)| kafka.librdkafka(k, v),
    );
    Config::new(mqtt_port, "tls")
        .connection("kafka", kafka)
        .route(Route::new("up", "secure/#", "kafka").set("topic", up))
        .downlink(Downlink::new(
            "down",
            "kafka",
            down,
            "devices/{key}/commands",
        ))
        .dead_letter("dead.jsonl")
}

/// Messages go up through the route and come down through the downlink; the test's own
/// clients use `ours`, the bridge `bridges` (with `env`). The bridge, still running.
async fn carries_both_ways(
    broker: &Server,
    port: u16,
    ours: &[(&'static str, String)],
    bridges: &[(&'static str, String)],
    env: &[(&str, &str)],
) -> Bridge {
    let bootstrap = format!("127.0.0.1:{port}");
    let (up, down) = (unique("tls-up"), unique("tls-down"));
    for topic in [&up, &down] {
        create_topic_with(client(ours), &bootstrap, topic, 1).await;
    }
    let config = bridge_config(broker.port, port, bridges, &up, &down).text();
    let bridge = Bridge::start_env(&config, env);
    bridge.wait_subscribed(0, 1);

    let mut publisher = Publisher::connect(broker.port).await;
    for i in 0..20 {
        publisher
            .publish("secure/car-1", format!("up-{i}"), Default::default())
            .await;
    }
    publisher.wait_acked(Duration::from_secs(10)).await;
    let consumer = reader(&bootstrap, &up, 1, client(ours));
    let mut got = Vec::new();
    let start = std::time::Instant::now();
    while got.len() < 20 && start.elapsed() < Duration::from_secs(30) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            got.push(common::kafka::text(&m.detach()));
        }
    }
    let expected: Vec<String> = (0..20).map(|i| format!("up-{i}")).collect();
    assert_eq!(got, expected, "log:\n{}", bridge.log_text());

    let device = Device::connect(broker.port, "devices/+/commands").await;
    let producer: FutureProducer = client(ours)
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    for i in 0..10 {
        let payload = format!("down-{i}");
        let record = FutureRecord::to(&down).key("car-1").payload(&payload);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    let received = device
        .wait(Duration::from_secs(30), |r| r.len() >= 10)
        .await;
    let payloads: Vec<String> = received.iter().map(|m| m.text()).collect();
    let expected: Vec<String> = (0..10).map(|i| format!("down-{i}")).collect();
    assert_eq!(payloads, expected, "log:\n{}", bridge.log_text());
    assert!(received.iter().all(|m| m.topic == "devices/car-1/commands"));
    bridge
}
