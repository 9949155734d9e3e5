//! rocketmq-rust's name server and broker (crates rocketmq-namesrv and rocketmq-broker 1.0.0,
//! built once into the cache by scripts/install-test-deps), started on free loopback ports with
//! a temp home and store; and a reader of a topic for the tests (rocketmq-client-rust's lite
//! pull consumer, reading from the first offset), and of a group's committed offsets (its admin
//! API).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rocketmq_client_rust::{
    ClientRuntime, ClientRuntimeConfig, DefaultLitePullConsumer, DefaultMQAdminExt,
    DefaultMQProducer, MQAdminReadExt, TelemetryHandle,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::MessageTrait;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};

/// The folder with rocketmq-namesrv-rust and rocketmq-broker-rust: MQBRIDGE_ROCKETMQ, else
/// the cache.
fn bin_dir() -> PathBuf {
    std::env::var_os("MQBRIDGE_ROCKETMQ")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/mqbridge/rocketmq-1.0.0/bin")
        })
}

pub struct RocketmqUnderTest {
    namesrv: Child,
    broker: Child,
    pub namesrv_port: u16,
    /// The broker's remoting port.
    pub broker_port: u16,
    pub dir: tempfile::TempDir,
    _store: tempfile::TempDir,
}

impl Drop for RocketmqUnderTest {
    fn drop(&mut self) {
        for child in [&mut self.broker, &mut self.namesrv] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl RocketmqUnderTest {
    /// A name server, and a broker registered with it, on loopback.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = bin_dir();
        let namesrv_port = super::free_port();
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        let namesrv = super::die_with_parent(&mut Command::new(bin.join("rocketmq-namesrv-rust")))
            .args([
                "--listenPort",
                &namesrv_port.to_string(),
                "--bindAddress",
                "127.0.0.1",
            ])
            .env("ROCKETMQ_HOME", dir.path())
            .env("HOME", dir.path())
            .current_dir(dir.path())
            .stdout(log("namesrv.out"))
            .stderr(log("namesrv.err"))
            .spawn()
            .expect("rocketmq-namesrv-rust is installed (scripts/install-test-deps)");
        super::wait_port(namesrv_port, Duration::from_secs(30));
        // The broker also listens on its port - 2 (the fast port) and on the HA port.
        let listen = free_port_pair();
        let ha = super::free_port();
        // The broker refuses writes once the store's disk is about 90 % full, counting space
        // reserved for root: a build machine's disk can be that full. Its store goes to memory
        // where there is some.
        let store_dir =
            tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap());
        let store = store_dir.path().join("store");
        let config = format!(
            r#"[broker]
namesrvAddr = "127.0.0.1:{namesrv_port}"
brokerIp1 = "127.0.0.1"
listenPort = {listen}
storePathRootDir = "{store}"
autoCreateTopicEnable = true

[broker.brokerServerConfig]
bindAddress = "127.0.0.1"

[broker.brokerIdentity]
brokerName = "broker-a"
brokerClusterName = "DefaultCluster"
brokerId = 0

[store]
storeType = "LocalFile"
brokerRole = "ASYNC_MASTER"
storePathRootDir = "{store}"
mappedFileSizeCommitLog = 67108864
haListenAddress = "127.0.0.1"
haListenPort = {ha}
"#,
            store = store.display()
        );
        let conf = dir.path().join("broker.toml");
        std::fs::write(&conf, config).unwrap();
        let broker = super::die_with_parent(&mut Command::new(bin.join("rocketmq-broker-rust")))
            .arg("-c")
            .arg(&conf)
            .args(["-n", &format!("127.0.0.1:{namesrv_port}")])
            .env("ROCKETMQ_HOME", dir.path())
            .env("HOME", dir.path())
            .env_remove("NAMESRV_ADDR")
            .current_dir(dir.path())
            .stdout(log("broker.out"))
            .stderr(log("broker.err"))
            .spawn()
            .expect("rocketmq-broker-rust is installed (scripts/install-test-deps)");
        let mut under = RocketmqUnderTest {
            namesrv,
            broker,
            namesrv_port,
            broker_port: listen,
            dir,
            _store: store_dir,
        };
        // Up, or gone (its log says why: a refused setting, a full disk).
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", listen)).is_err() {
            let exited = under.broker.try_wait().ok().flatten();
            let late = start.elapsed() > Duration::from_secs(60);
            if exited.is_some() || late {
                let log = under.logs();
                let tail: String = log.lines().rev().take(40).collect::<Vec<_>>().join("\n");
                panic!("the RocketMQ broker did not start ({exited:?}); its log, last lines first:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        under
    }

    pub fn broker_pid(&self) -> u32 {
        self.broker.id()
    }

    pub fn namesrv(&self) -> String {
        format!("127.0.0.1:{}", self.namesrv_port)
    }

    /// The broker's and name server's logs, for a failing test's message.
    pub fn logs(&self) -> String {
        ["namesrv.err", "broker.err", "broker.out"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A free port whose port - 2 is free too (the broker's fast port).
fn free_port_pair() -> u16 {
    loop {
        let p = super::free_port();
        if p > 1026 && std::net::TcpListener::bind(("127.0.0.1", p - 2)).is_ok() {
            return p;
        }
    }
}

/// The client's runtime for a test.
pub struct Client {
    pub runtime: Arc<ClientRuntime>,
    _owner: RuntimeOwner,
}

impl Client {
    pub fn new() -> Self {
        let owner = RuntimeOwner::plan(RuntimeConfig {
            thread_name: "test-rocketmq".into(),
            ..Default::default()
        })
        .unwrap()
        .build()
        .unwrap();
        let runtime = ClientRuntime::try_new(
            owner.root_context().component("test"),
            ClientRuntimeConfig::default(),
            TelemetryHandle::noop(),
        )
        .unwrap();
        Client {
            runtime,
            _owner: owner,
        }
    }

    /// Creates `topic` with `queues` queues and waits until its route is known.
    pub async fn create_topic(&self, namesrv: &str, topic: &str, queues: i32) {
        let mut producer = DefaultMQProducer::builder(self.runtime.clone())
            .producer_group("mqbridge_test_admin")
            .name_server_addr(namesrv)
            .build();
        producer.start().await.unwrap();
        let start = Instant::now();
        loop {
            let created = producer
                .create_topic("TBW102", topic, queues, HashMap::new())
                .await;
            if created.is_ok() {
                let queues = producer.fetch_publish_message_queues(topic).await;
                if queues.is_ok_and(|q| !q.is_empty()) {
                    break;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "topic {topic} never came up: {created:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        producer.shutdown().await;
    }

    /// The sum, over `topic`'s queues, of the offsets `group` committed, as the broker holds
    /// them (0 for a queue without one); `None` while the broker cannot tell.
    pub async fn committed(&self, namesrv: &str, group: &str, topic: &str) -> Option<i64> {
        let mut admin = DefaultMQAdminExt::new(self.runtime.clone());
        admin.set_namesrv_addr(namesrv);
        admin.start().await.ok()?;
        let stats = admin
            .examine_consume_stats(group.into(), Some(topic.into()), None, None, None)
            .await;
        admin.shutdown().await;
        let stats = stats.ok()?;
        let offsets = stats.get_offset_table().values();
        Some(offsets.map(|o| o.get_consumer_offset().max(0)).sum())
    }

    /// A started producer, for tests that write what downlinks read.
    pub async fn producer(&self, namesrv: &str) -> DefaultMQProducer {
        let mut producer = DefaultMQProducer::builder(self.runtime.clone())
            .producer_group(super::unique("test_producer").replace('.', "_").as_str())
            .name_server_addr(namesrv)
            .build();
        producer.start().await.unwrap();
        producer
    }

    /// Reads `topic` from its first offset until `done` says enough or `limit` passes.
    pub async fn read(
        &self,
        namesrv: &str,
        topic: &str,
        limit: Duration,
        done: impl Fn(&[MessageExt]) -> bool,
    ) -> Vec<MessageExt> {
        let consumer = DefaultLitePullConsumer::builder(self.runtime.clone())
            .consumer_group(super::unique("reader").replace('.', "_").as_str())
            .name_server_addr(namesrv)
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .auto_commit(false)
            .pull_batch_size(256)
            .build()
            .unwrap();
        consumer.start().await.unwrap();
        consumer
            .subscribe_with_expression(topic, "*")
            .await
            .unwrap();
        let start = Instant::now();
        let mut got = Vec::new();
        while start.elapsed() < limit && !done(&got) {
            got.extend(consumer.poll_with_timeout(500).await);
        }
        consumer.shutdown().await;
        got
    }
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

/// A message's body as text.
pub fn body(m: &MessageExt) -> String {
    String::from_utf8_lossy(&m.body().unwrap_or_default()).into_owned()
}

/// A message's user property.
pub fn property(m: &MessageExt, name: &str) -> Option<String> {
    m.user_property(&name.into()).map(|v| v.to_string())
}

/// A message's tag and keys.
pub fn tag_and_keys(m: &MessageExt) -> (Option<String>, Option<String>) {
    (
        m.tags().map(|t| t.to_string()),
        m.get_keys().map(|k| k.to_string()),
    )
}

/// Sends one message with its tag, keys and user properties, and waits for SEND_OK.
pub async fn send(
    producer: &DefaultMQProducer,
    topic: &str,
    tag: &str,
    keys: &str,
    properties: &[(&str, &str)],
    body: &str,
) {
    let mut message = rocketmq_model::common::message::message_single::Message::builder()
        .topic(topic)
        .body(body.as_bytes().to_vec())
        .tags(tag)
        .key(keys)
        .build()
        .unwrap();
    for (name, value) in properties {
        message
            .put_user_property((*name).into(), (*value).into())
            .unwrap();
    }
    let sent = producer.send(message).await.unwrap().unwrap();
    assert_eq!(
        sent.send_status,
        rocketmq_client_rust::SendStatus::SendOk,
        "{sent:?}"
    );
}
