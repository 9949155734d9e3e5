//! `mqtts://`: the bridge connects to a mosquitto TLS listener whose certificate is signed by a
//! private CA given as `[mqtt.tls] ca_file`, and refuses the same broker without that CA.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::mqtt::Publisher;
use common::{die_with_parent, eventually, free_port, unique, wait_port, Bridge, Server};

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "openssl {args:?}");
}

/// A CA, and a server certificate for 127.0.0.1 signed by it.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
}

/// mosquitto with a plain listener (for the test's publisher) and a TLS one (for the bridge).
fn tls_mosquitto() -> (Server, u16) {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let (port, tls_port) = (free_port(), free_port());
    let d = dir.path().display();
    let conf = format!(
        "per_listener_settings false\nallow_anonymous true\npersistence false\n\
         listener {port} 127.0.0.1\n\
         listener {tls_port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n"
    );
    std::fs::write(dir.path().join("mosquitto.conf"), conf).unwrap();
    // mosquitto drops privileges when started as root: let it read the key.
    Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir.path())
        .status()
        .unwrap();
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
    let tls = ca
        .map(|ca| format!("[mqtt.tls]\nca_file = \"{}\"\n", ca.display()))
        .unwrap_or_default();
    format!(
        r#"
[mqtt]
url = "mqtts://127.0.0.1:{tls_port}"
client_id_prefix = "{prefix}"
{tls}
[connections.out]
type = "file"
path = "out.jsonl"

[[routes]]
name = "secure"
filters = ["secure/#"]
connection = "out"
"#,
        prefix = unique("tls")
    )
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
        std::fs::read_to_string(&out)
            .map(|t| t.contains("\"payload\":\"over tls\""))
            .unwrap_or(false)
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
