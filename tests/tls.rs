//! `mqtts://`: the bridge connects to a mosquitto TLS listener whose certificate is signed by a
//! private CA given as `[mqtt.tls] ca_file`, and refuses the same broker without that CA; with
//! a broker that requires client certificates, it connects with its own (`cert_file`,
//! `key_file`), and one the broker's CA did not sign is refused with a clear error.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::config::{Config, Connection, Route};
use common::mqtt::Publisher;
use common::{certs, die_with_parent, eventually, free_port, wait_port, Bridge, Server};

/// mosquitto with a plain listener (for the test's publisher) and a TLS one (for the bridge).
fn tls_mosquitto() -> (Server, u16) {
    mosquitto_with_tls(false)
}

/// The same; with `require_certificate`, the TLS listener takes only clients holding a
/// certificate of the CA (`client.pem`, `client.key`; `rogue.pem`, `rogue.key` are of another
/// CA).
fn mosquitto_with_tls(require_certificate: bool) -> (Server, u16) {
    let dir = tempfile::tempdir().unwrap();
    certs::server_set(dir.path());
    certs::signed(dir.path(), "ca", "client", "mqbridge", false);
    certs::ca(dir.path(), "other-ca");
    certs::signed(dir.path(), "other-ca", "rogue", "mqbridge", false);
    let (port, tls_port) = (free_port(), free_port());
    let d = dir.path().display();
    let conf = format!(
        "per_listener_settings false\nallow_anonymous true\npersistence false\n\
         listener {port} 127.0.0.1\n\
         listener {tls_port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n\
         require_certificate {require_certificate}\n"
    );
    std::fs::write(dir.path().join("mosquitto.conf"), conf).unwrap();
    certs::readable(dir.path());
    let child = die_with_parent(&mut Command::new("mosquitto"))
        .arg("-c")
        .arg(dir.path().join("mosquitto.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_port(tls_port, Duration::from_secs(10));
    (Server { child, port, dir }, tls_port)
}

fn config(tls_port: u16, ca: Option<&Path>) -> String {
    let config = config_with(tls_port);
    match ca {
        Some(ca) => config.mqtt("tls.ca_file", ca.display().to_string()),
        None => config,
    }
    .text()
}

/// A bridge on `[mqtt.tls]` with the CA and the client certificate `name` of `dir`.
fn client_config(tls_port: u16, dir: &Path, name: &str) -> String {
    let d = dir.display();
    config_with(tls_port)
        .mqtt("tls.ca_file", format!("{d}/ca.pem"))
        .mqtt("tls.cert_file", format!("{d}/{name}.pem"))
        .mqtt("tls.key_file", format!("{d}/{name}.key"))
        .text()
}

/// A bridge on the broker's TLS listener, with no `[mqtt.tls]` yet, routing `secure/#` to
/// out.jsonl.
fn config_with(tls_port: u16) -> Config {
    Config::on(&format!("mqtts://127.0.0.1:{tls_port}"), "tls")
        .connection("out", Connection::file("out.jsonl"))
        .route(Route::new("secure", "secure/#", "out"))
}

#[tokio::test]
async fn mqtts_with_a_private_ca_delivers() {
    let (broker, tls_port) = tls_mosquitto();
    let bridge = Bridge::start(&config(tls_port, Some(&broker.dir.path().join("ca.pem"))));
    bridge.wait_subscribed(0, 1);
    let mut publisher = Publisher::connect(broker.port).await;
    publisher
        .publish("secure/a", "over tls", Default::default())
        .await;
    publisher.wait_acked(Duration::from_secs(5)).await;
    let out = bridge.dir.join("out.jsonl");
    let arrived = eventually(Duration::from_secs(10), || {
        common::file_payloads(&out).contains_key("over tls")
    })
    .await;
    assert!(arrived, "log:\n{}", bridge.log_text());
}

#[tokio::test]
async fn mqtts_refuses_a_broker_it_cannot_verify() {
    let (_broker, tls_port) = tls_mosquitto();
    let bridge = Bridge::start(&config(tls_port, None));
    let refused = eventually(Duration::from_secs(10), || {
        bridge.log_text().contains("cannot connect to the broker")
    })
    .await;
    let log = bridge.log_text();
    assert!(refused, "no connection error logged:\n{log}");
    assert!(
        !log.contains(" subscribed "),
        "connected to an unverified broker:\n{log}"
    );
}

#[tokio::test]
async fn a_broker_that_requires_client_certificates_takes_the_bridges() {
    let (broker, tls_port) = mosquitto_with_tls(true);
    let bridge = Bridge::start(&client_config(tls_port, broker.dir.path(), "client"));
    bridge.wait_subscribed(0, 1);
    let mut publisher = Publisher::connect(broker.port).await;
    publisher
        .publish("secure/a", "with a client certificate", Default::default())
        .await;
    publisher.wait_acked(Duration::from_secs(5)).await;
    let out = bridge.dir.join("out.jsonl");
    let arrived = eventually(Duration::from_secs(10), || {
        common::file_payloads(&out).contains_key("with a client certificate")
    })
    .await;
    assert!(arrived, "log:\n{}", bridge.log_text());
}

/// A certificate of another CA, or none: the broker refuses the TLS handshake, and the bridge
/// says that it cannot connect, and why, naming the broker.
#[tokio::test]
async fn a_client_certificate_the_broker_refuses_is_a_clear_error() {
    let (broker, tls_port) = mosquitto_with_tls(true);
    let rogue = Bridge::start(&client_config(tls_port, broker.dir.path(), "rogue"));
    let without = Bridge::start(&config(tls_port, Some(&broker.dir.path().join("ca.pem"))));
    for bridge in [&rogue, &without] {
        let refused = eventually(Duration::from_secs(10), || {
            bridge.log_text().contains("cannot connect to the broker")
        })
        .await;
        let log = bridge.log_text();
        assert!(refused, "no connection error logged:\n{log}");
        let line = log
            .lines()
            .find(|l| l.contains("cannot connect to the broker"))
            .unwrap();
        assert!(line.contains(&format!("127.0.0.1:{tls_port}")), "{line}");
        assert!(
            line.to_lowercase().contains("certificate") || line.contains("alert"),
            "the error does not say what the broker refused: {line}"
        );
        assert!(
            !log.contains(" subscribed "),
            "subscribed without a valid certificate:\n{log}"
        );
    }
}
