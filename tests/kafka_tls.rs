//! Kafka over TLS with client certificates (mutual TLS), set through the connection's
//! `librdkafka` table as the README shows it, for a route (the producer) and a downlink (the
//! consumer, which keeps the TLS settings while it leaves out the producer-only ones).
//!
//! tansu 0.6 takes `--cert`/`--key` but serves plain TCP (its TLS acceptor is built and never
//! used), so TLS is terminated in front of it by stunnel (Debian's `stunnel4`), which requires a
//! client certificate of the test's CA; tansu advertises stunnel's port, so every connection
//! librdkafka makes goes through TLS. SASL/SCRAM is not exercised: with tansu's in-memory
//! storage, a user can only be created through the broker, and with authentication on the
//! broker takes no request but the handshake before a user authenticates.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use common::device::Device;
use common::kafka::{create_topic_with, reader};
use common::mqtt::Publisher;
use common::{certs, die_with_parent, free_port, mosquitto, unique, wait_port, Bridge, Server};

/// tansu behind stunnel: the TLS port, with the certificates in the server's folder.
fn tls_kafka() -> (Server, Server, u16) {
    let dir = tempfile::tempdir().unwrap();
    certs::server_set(dir.path());
    certs::signed(dir.path(), "ca", "client", "mqbridge", false);
    certs::readable(dir.path());
    let (plain, tls) = (free_port(), free_port());
    let kafka = common::tansu(plain, tls);
    let d = dir.path().display();
    let conf = format!(
        "foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{tls}\nconnect = 127.0.0.1:{plain}\n\
         cert = {d}/server.pem\nkey = {d}/server.key\nCAfile = {d}/ca.pem\n\
         requireCert = yes\nverifyChain = yes\n"
    );
    std::fs::write(dir.path().join("stunnel.conf"), conf).unwrap();
    let child = die_with_parent(&mut Command::new("stunnel"))
        .arg(dir.path().join("stunnel.conf"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stunnel.log")).unwrap())
        .spawn()
        .expect("stunnel (Debian's stunnel4; scripts/test installs it)");
    wait_port(tls, Duration::from_secs(10));
    let stunnel = Server {
        child,
        port: tls,
        dir,
    };
    (kafka, stunnel, tls)
}

/// librdkafka's TLS settings with the client certificate of `dir`.
fn tls_settings(dir: &Path) -> Vec<(&'static str, String)> {
    let d = dir.display();
    vec![
        ("security.protocol", "ssl".into()),
        ("ssl.ca.location", format!("{d}/ca.pem")),
        ("ssl.certificate.location", format!("{d}/client.pem")),
        ("ssl.key.location", format!("{d}/client.key")),
    ]
}

fn client(dir: &Path) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in tls_settings(dir) {
        config.set(key, value);
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_over_mutual_tls_carries_both_ways() {
    let broker = mosquitto();
    let (_kafka, stunnel, tls) = tls_kafka();
    let bootstrap = format!("127.0.0.1:{tls}");
    let (up, down) = (unique("tls-up"), unique("tls-down"));
    for topic in [&up, &down] {
        create_topic_with(client(stunnel.dir.path()), &bootstrap, topic, 1).await;
    }
    let librdkafka: String = tls_settings(stunnel.dir.path())
        .iter()
        .map(|(k, v)| format!("\"{k}\" = \"{v}\"\n"))
        .collect();
    let config = format!(
        r#"
[mqtt]
url = "mqtt://127.0.0.1:{}"
client_id_prefix = "{}"

[connections.kafka]
type = "kafka"
bootstrap_servers = "{bootstrap}"

[connections.kafka.librdkafka]
{librdkafka}
[[routes]]
name = "up"
filters = ["secure/#"]
connection = "kafka"
topic = "{up}"

[[downlinks]]
name = "down"
connection = "kafka"
topic = "{down}"
start = "earliest"
mqtt_topic = "devices/{{key}}/commands"

[dead_letter]
path = "dead.jsonl"
"#,
        broker.port,
        unique("tls")
    );
    let bridge = Bridge::start(&config);
    bridge.wait_subscribed(0, 1);

    let mut publisher = Publisher::connect(broker.port).await;
    for i in 0..20 {
        publisher
            .publish("secure/car-1", format!("up-{i}"), Default::default())
            .await;
    }
    publisher.wait_acked(Duration::from_secs(10)).await;
    let consumer = reader(&bootstrap, &up, 1, client(stunnel.dir.path()));
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
    let producer: FutureProducer = client(stunnel.dir.path())
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
    let stunnel_log =
        std::fs::read_to_string(stunnel.dir.path().join("stunnel.log")).unwrap_or_default();
    assert!(
        stunnel_log.contains("Certificate accepted") || stunnel_log.contains("verify ok"),
        "stunnel never checked a client certificate:\n{stunnel_log}"
    );
}
