//! One measured run: a fresh mosquitto, the system under test started and subscribed, a sink
//! observer, the publisher process, then the system's CPU time and peak memory read from /proc
//! before it is stopped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::common::rocketmq::{Client, RocketmqUnderTest};
use crate::common::{self, Bridge, Server};
use crate::function::{Calls, FunctionReport, HttpRun};
use crate::observe::{self, Expect};
use crate::publisher::PublishReport;
use crate::tally::Summary;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// The no-op subscriber: what the MQTT broker can deliver.
    Ceiling,
    /// A Rust producer straight into Kafka, no MQTT: what the Kafka broker can take.
    KafkaAlone,
    /// mqbridge with the file sink.
    File,
    /// The same with a `where` and a `transform` on every message (`RULES`).
    FileRules,
    /// mqbridge with the Kafka sink.
    Kafka,
    /// mqbridge with the file sink behind a disk buffer.
    FileDisk,
    /// mqbridge with the Kafka sink behind a disk buffer.
    KafkaDisk,
    /// The same route's disk buffer filled first while Kafka was unreachable, then the bridge
    /// started again with Kafka there: the buffer's drain rate, from the start to the last
    /// arrival.
    DrainDisk,
    /// The same system on the baseline build of mqbridge (`--baseline`).
    Base(&'static System),
    /// The hand-written Python bridge in benches/peers.
    Peer,
    /// The bridge on the mq-bridge crate in benches/peers/mq-bridge.
    MqBridgePeer,
    /// mqbridge with an `http` connection to the no-op function (the `function` role).
    Http(HttpRun),
    /// A rocketmq-client-rust producer straight into RocketMQ, batched like the bridge.
    RocketmqAlone,
    /// mqbridge from the run's broker to a second mosquitto (an `mqtt` connection), the no-op
    /// subscriber counting there.
    Broker,
    /// mqbridge with the RocketMQ sink.
    Rocketmq,
    /// A Kafka producer at full speed → a downlink → MQTT → the no-op subscriber.
    DownKafka,
    /// A RocketMQ producer at full speed → a downlink → MQTT → the no-op subscriber.
    DownRocketmq,
    /// A Kafka topic filled first, then a downlink started → MQTT → the no-op subscriber:
    /// the bridge's own rate, from its start to the last arrival.
    DrainKafka,
    /// The same from a RocketMQ topic filled first.
    DrainRocketmq,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Ceiling => "ceiling (MQTT)",
            System::KafkaAlone => "Kafka alone",
            System::File => "mqbridge → file",
            System::FileRules => "mqbridge → file, where + transform",
            System::Kafka => "mqbridge → Kafka",
            System::FileDisk => "mqbridge → disk buffer → file",
            System::KafkaDisk => "mqbridge → disk buffer → Kafka",
            System::DrainDisk => "filled disk buffer → mqbridge → Kafka",
            System::Base(System::File) => "baseline → file",
            System::Base(System::Kafka) => "baseline → Kafka",
            System::Base(System::Http(_)) => "baseline → http, batch 100",
            System::Base(System::DrainKafka) => "baseline: filled Kafka → MQTT",
            System::Base(System::DrainRocketmq) => "baseline: filled RocketMQ → MQTT",
            System::Base(_) => "baseline",
            System::Peer => "Python peer → Kafka",
            System::MqBridgePeer => "mq-bridge (Rust crate 1.3.0) → Kafka",
            System::Http(h) => h.name(),
            System::RocketmqAlone => "RocketMQ alone",
            System::Rocketmq => "mqbridge → RocketMQ",
            System::Broker => "mqbridge → a second MQTT broker",
            System::DownKafka => "Kafka → mqbridge → MQTT",
            System::DownRocketmq => "RocketMQ → mqbridge → MQTT",
            System::DrainKafka => "filled Kafka → mqbridge → MQTT",
            System::DrainRocketmq => "filled RocketMQ → mqbridge → MQTT",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "ceiling" => System::Ceiling,
            "kafka-alone" => System::KafkaAlone,
            "file" => System::File,
            "file-rules" => System::FileRules,
            "kafka" => System::Kafka,
            "file-disk" => System::FileDisk,
            "kafka-disk" => System::KafkaDisk,
            "drain-disk" => System::DrainDisk,
            "base-file" => System::Base(&FILE),
            "base-kafka" => System::Base(&KAFKA),
            "peer" => System::Peer,
            "mq-bridge" => System::MqBridgePeer,
            "rocketmq-alone" => System::RocketmqAlone,
            "rocketmq" => System::Rocketmq,
            "broker" => System::Broker,
            "down-kafka" => System::DownKafka,
            "down-rocketmq" => System::DownRocketmq,
            "drain-kafka" => System::DrainKafka,
            "drain-rocketmq" => System::DrainRocketmq,
            _ => match HttpRun::parse(s) {
                Some(h) => System::Http(h),
                None => bail!(
                    "unknown system {s:?} (ceiling, kafka-alone, file, file-rules, kafka, file-disk, kafka-disk, drain-disk, base-file, \
                     base-kafka, peer, mq-bridge, rocketmq-alone, rocketmq, broker, down-kafka, down-rocketmq, drain-kafka, \
                     drain-rocketmq, {})",
                    HttpRun::NAMES
                ),
            },
        })
    }

    /// The system itself, for a baseline run.
    pub fn inner(self) -> System {
        match self {
            System::Base(s) => *s,
            s => s,
        }
    }

    pub fn uses_kafka(self) -> bool {
        matches!(
            self.inner(),
            System::KafkaAlone
                | System::Kafka
                | System::KafkaDisk
                | System::DrainDisk
                | System::Peer
                | System::MqBridgePeer
                | System::DownKafka
                | System::DrainKafka
        )
    }

    pub fn uses_rocketmq(self) -> bool {
        matches!(
            self.inner(),
            System::RocketmqAlone | System::Rocketmq | System::DownRocketmq | System::DrainRocketmq
        )
    }

    /// Downlinks: the source's producer writes, the no-op subscriber counts.
    pub fn downlink(self) -> bool {
        matches!(
            self.inner(),
            System::DownKafka | System::DownRocketmq | System::DrainKafka | System::DrainRocketmq
        )
    }

    /// A source filled before the bridge starts: a topic, or the route's disk buffer.
    pub fn drain(self) -> bool {
        matches!(
            self.inner(),
            System::DrainKafka | System::DrainRocketmq | System::DrainDisk
        )
    }

    /// The same sink on the baseline build, for A/B rows.
    pub fn baseline(self) -> Option<System> {
        match self {
            System::File => Some(System::Base(&FILE)),
            System::Kafka => Some(System::Base(&KAFKA)),
            System::Http(HttpRun::Batch100) => Some(System::Base(&HTTP100)),
            System::DrainKafka => Some(System::Base(&DRAIN_KAFKA)),
            System::DrainRocketmq => Some(System::Base(&DRAIN_ROCKETMQ)),
            _ => None,
        }
    }

    /// The runs that the `function` role observes, reported in a section of their own.
    pub fn http(self) -> Option<HttpRun> {
        match self.inner() {
            System::Http(h) => Some(h),
            _ => None,
        }
    }
}

// The systems a baseline run wraps.
static FILE: System = System::File;
static KAFKA: System = System::Kafka;
static HTTP100: System = System::Http(HttpRun::Batch100);
static DRAIN_KAFKA: System = System::DrainKafka;
static DRAIN_ROCKETMQ: System = System::DrainRocketmq;

/// The workload of one run.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub size: usize,
    pub count: u64,
    /// Messages per second; 0 for as fast as the broker accepts.
    pub rate: f64,
    /// `Some(n)`: n routes, each with its own filter and one consumer (the width runs).
    /// `None`: one route with `Env::consumers` consumers.
    pub width: Option<usize>,
}

impl Load {
    /// Topics the publisher spreads messages over: one per route in the width runs.
    fn topics(self) -> usize {
        self.width.unwrap_or(64)
    }

    /// This load as `system` runs it: a slow function carries fewer messages.
    fn for_system(self, system: System) -> Load {
        match system.http().and_then(|h| h.setup().max_count) {
            Some(max) => Load {
                count: self.count.min(max),
                ..self
            },
            None => self,
        }
    }
}

/// Everything measured in one run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub system: System,
    pub load: Load,
    pub summary: Summary,
    pub publish: PublishReport,
    /// Spawn to every consumer subscribed.
    pub startup: Duration,
    pub rss_started_kib: u64,
    pub peak_rss_kib: u64,
    /// CPU seconds the system used from the first publish to the last arrival.
    pub cpu_s: f64,
    /// The calls the function took (the http systems).
    pub calls: Option<Calls>,
}

impl Outcome {
    /// Topics the publisher spread the messages over.
    pub fn topics(&self) -> usize {
        topics(self.system, self.load)
    }

    pub fn cpu_per_100k(&self) -> f64 {
        self.cpu_s / self.summary.unique.max(1) as f64 * 100_000.0
    }
}

/// What every run shares: the Kafka broker, the RocketMQ servers, the peers' interpreter and
/// binary, the bridge's settings.
pub struct Env {
    pub exe: PathBuf,
    pub kafka: Option<Server>,
    pub rocketmq: Option<Rocketmq>,
    pub python: PathBuf,
    /// The mq-bridge peer's binary (MQBRIDGE_BENCH_MQ_BRIDGE), when set.
    pub mq_bridge: Option<PathBuf>,
    pub consumers: u32,
    pub receive_maximum: u16,
    /// Of each Kafka topic; also the queues of each RocketMQ topic.
    pub partitions: i32,
    pub publishers: u64,
    pub stall: Duration,
    pub rt: tokio::runtime::Runtime,
    /// The bridge build the base-* systems run.
    pub baseline: Option<PathBuf>,
}

impl Env {
    fn bootstrap(&self) -> String {
        let port = self.kafka.as_ref().expect("Kafka started").port;
        format!("127.0.0.1:{port}")
    }

    fn rocketmq(&self) -> &Rocketmq {
        self.rocketmq.as_ref().expect("RocketMQ started")
    }
}

/// A RocketMQ name server and broker for the whole invocation, and a client runtime to create
/// topics and read them.
pub struct Rocketmq {
    pub servers: RocketmqUnderTest,
    pub client: Client,
}

impl Rocketmq {
    pub fn start() -> Self {
        Rocketmq {
            servers: RocketmqUnderTest::start(),
            client: Client::new(),
        }
    }
}

/// What starting one system for one run takes.
#[derive(Clone, Copy)]
struct Setup<'a> {
    env: &'a Env,
    system: System,
    load: Load,
    /// mosquitto's.
    port: u16,
    /// The second mosquitto's, where the `broker` system delivers.
    second: u16,
    /// Of the MQTT topics, share group and client ids.
    prefix: &'a str,
    /// The Kafka or RocketMQ topic.
    topic: &'a str,
    /// Where the bridge's config and the file sink's output go.
    dir: &'a Path,
}

/// Topics the publisher spreads `system`'s messages over under `load`.
fn topics(system: System, load: Load) -> usize {
    system
        .http()
        .and_then(|h| h.setup().topics)
        .unwrap_or(load.topics())
}

/// The system under test, running.
enum Running {
    Bridge(Bridge),
    /// The bridge and the function it calls: only the bridge is measured.
    Function(Bridge, Child),
    Process(Child),
    /// Kafka or RocketMQ alone: the producer is the publisher, nothing else runs.
    Nothing,
}

impl Running {
    fn pid(&self) -> Option<u32> {
        match self {
            Running::Bridge(b) | Running::Function(b, _) => Some(b.pid()),
            Running::Process(c) => Some(c.id()),
            Running::Nothing => None,
        }
    }

    fn stop(self) {
        match self {
            Running::Bridge(b) => stop_bridge(b),
            // The bridge first: it delivers what it holds before it exits.
            Running::Function(b, mut function) => {
                stop_bridge(b);
                common::terminate(&mut function, Duration::from_secs(20));
            }
            Running::Nothing => {}
            Running::Process(mut c) => {
                common::terminate(&mut c, Duration::from_secs(20));
            }
        }
    }
}

fn stop_bridge(mut b: Bridge) {
    if b.stop() != Some(0) {
        eprintln!(
            "mqbench: the bridge did not exit cleanly:\n{}",
            b.log_text()
        );
    }
}

pub fn run(env: &Env, system: System, load: Load) -> anyhow::Result<Outcome> {
    let load = load.for_system(system);
    let broker = common::mosquitto();
    let second = (system.inner() == System::Broker).then(common::mosquitto);
    let prefix = common::unique("bench");
    let dir = tempfile::tempdir()?;
    let topic = format!("{prefix}-out");
    if system.uses_kafka() {
        env.rt.block_on(common::kafka::create_topic(
            &env.bootstrap(),
            &topic,
            env.partitions,
        ));
    }
    if system.uses_rocketmq() {
        let rocketmq = env.rocketmq();
        let namesrv = rocketmq.servers.namesrv();
        let create = rocketmq
            .client
            .create_topic(&namesrv, &topic, env.partitions);
        env.rt.block_on(create);
    }
    let expect = Expect {
        count: load.count,
        groups: load.width.unwrap_or(1),
        stall: env.stall,
    };
    let setup = Setup {
        env,
        system,
        load,
        port: broker.port,
        second: second.as_ref().map_or(broker.port, |b| b.port),
        prefix: &prefix,
        topic: &topic,
        dir: dir.path(),
    };
    // A drain run fills the topic or the buffer first; its clock starts with the bridge.
    let filled = match system.inner() {
        System::DrainKafka => Some(produce(env, load, &topic)?),
        System::DrainRocketmq => Some(rocketmq_produce(env, load, &topic)?),
        System::DrainDisk => Some(fill_buffer(setup)?),
        _ => None,
    };
    // The observer of a filled buffer's drain reads from before the bridge starts: the
    // bridge delivers from its first moment.
    let kafka_observer = || observe::kafka(env.bootstrap(), topic.clone(), env.partitions, expect);
    let mut early = (system.inner() == System::DrainDisk).then(kafka_observer);
    let started_ns = crate::payload::now_ns();
    let spawned = Instant::now();
    let (running, mut stdout) = start(setup)?;
    let startup = spawned.elapsed();
    let pid = running.pid();
    let observer = match system.inner() {
        System::DrainDisk => early.take(),
        System::Ceiling
        | System::Http(_)
        | System::Broker
        | System::DownKafka
        | System::DownRocketmq
        | System::DrainKafka
        | System::DrainRocketmq => None,
        System::KafkaAlone => Some(kafka_observer()),
        System::Base(_) => unreachable!("inner() is never a baseline"),
        System::File | System::FileRules | System::FileDisk => {
            Some(observe::file(dir.path().join("out.jsonl"), expect))
        }
        System::Kafka | System::KafkaDisk | System::Peer | System::MqBridgePeer => {
            Some(kafka_observer())
        }
        System::RocketmqAlone | System::Rocketmq => Some(observe::rocketmq(
            env.rocketmq().client.runtime.clone(),
            env.rocketmq().servers.namesrv(),
            topic.clone(),
            env.partitions as usize,
            expect,
        )?),
    };
    let rss = |field| pid.and_then(|pid| common::proc_status_kib(pid, field));
    let cpu = || pid.and_then(common::cpu_seconds);
    let rss_started_kib = rss("VmRSS").unwrap_or(0);
    let cpu_before = cpu().unwrap_or(0.0);
    let publish = match system.inner() {
        _ if filled.is_some() => filled.expect("a filled topic"),
        System::KafkaAlone | System::DownKafka => produce(env, load, &topic)?,
        System::RocketmqAlone | System::DownRocketmq => rocketmq_produce(env, load, &topic)?,
        _ => publish(env, load, topics(system, load), broker.port, &prefix)?,
    };
    let (summary, calls) = match observer {
        Some(o) => (o.join().expect("observer thread"), None),
        None => {
            let line = next_line(
                stdout.as_mut().expect("helper output"),
                Duration::from_secs(300),
            )?;
            match system.inner() {
                System::Http(_) => {
                    let r: FunctionReport = serde_json::from_str(&line)
                        .with_context(|| format!("function report {line:?}"))?;
                    (r.summary, Some(r.calls))
                }
                _ => (
                    serde_json::from_str(&line)
                        .with_context(|| format!("ceiling summary {line:?}"))?,
                    None,
                ),
            }
        }
    };
    let mut summary = summary;
    if system.drain() {
        summary.first_send_ns = started_ns;
    }
    let cpu_s = cpu().unwrap_or(0.0) - cpu_before;
    let peak_rss_kib = rss("VmHWM").unwrap_or(0);
    running.stop();
    Ok(Outcome {
        system,
        load,
        summary,
        publish,
        startup,
        rss_started_kib,
        peak_rss_kib,
        cpu_s,
        calls,
    })
}

fn start(setup: Setup) -> anyhow::Result<(Running, Option<Receiver<String>>)> {
    let Setup {
        env, system, load, ..
    } = setup;
    match system.inner() {
        System::Base(_) => unreachable!("inner() is never a baseline"),
        System::KafkaAlone | System::RocketmqAlone => Ok((Running::Nothing, None)),
        System::Ceiling => {
            let (child, lines) = ceiling(setup)?;
            Ok((Running::Process(child), Some(lines)))
        }
        System::DownKafka | System::DownRocketmq => {
            let (subscriber, lines) = ceiling(setup)?;
            let admin = common::free_port();
            let bridge = bridge_process(setup, &downlink_config(setup, admin))?;
            warm_up(setup, &bridge, admin)?;
            Ok((Running::Function(bridge, subscriber), Some(lines)))
        }
        System::DrainKafka | System::DrainRocketmq => {
            let (subscriber, lines) = ceiling(setup)?;
            let bridge = bridge_process(setup, &downlink_config(setup, common::free_port()))?;
            Ok((Running::Function(bridge, subscriber), Some(lines)))
        }
        System::Broker => {
            let on_second = Setup {
                port: setup.second,
                ..setup
            };
            let (subscriber, lines) = ceiling(on_second)?;
            let bridge = start_bridge(setup, broker_config(setup))?;
            Ok((Running::Function(bridge, subscriber), Some(lines)))
        }
        System::Peer => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/paho_kafka.py");
            let mut command = Command::new(&env.python);
            command.arg(script);
            start_peer(setup, command, &[])
        }
        System::MqBridgePeer => {
            let bin = env.mq_bridge.as_ref().context(
                "MQBRIDGE_BENCH_MQ_BRIDGE is not set: the mq-bridge peer's binary, which \
                 scripts/bench builds from benches/peers/mq-bridge",
            )?;
            let consumers = format!("--consumers={}", env.consumers);
            start_peer(setup, Command::new(bin), &[&consumers])
        }
        System::File
        | System::FileRules
        | System::FileDisk
        | System::Kafka
        | System::KafkaDisk
        | System::DrainDisk
        | System::Rocketmq => {
            let bridge = start_bridge(setup, bridge_config(setup, None))?;
            Ok((Running::Bridge(bridge), None))
        }
        System::Http(h) => {
            let function_port = common::free_port();
            let mut function = child(Command::new(&env.exe).args([
                "function",
                &format!("--port={function_port}"),
                &format!("--count={}", load.count),
                &format!("--delay-ms={}", h.setup().delay_ms),
                &format!("--stall={}s", env.stall.as_secs()),
            ]))?;
            let lines = lines(&mut function);
            expect_line(&lines, "listening", Duration::from_secs(30))?;
            let bridge = start_bridge(setup, bridge_config(setup, Some(function_port)))?;
            Ok((Running::Function(bridge, function), Some(lines)))
        }
    }
}

/// A peer bridge (`command`, given the peers' flags and `extra`), once it says it subscribed.
fn start_peer(
    setup: Setup,
    mut command: Command,
    extra: &[&str],
) -> anyhow::Result<(Running, Option<Receiver<String>>)> {
    let Setup {
        env,
        port,
        prefix,
        topic,
        ..
    } = setup;
    let mut child = child(
        command
            .args([
                "--mqtt-host=127.0.0.1",
                &format!("--mqtt-port={port}"),
                &format!("--filter={prefix}/#"),
                &format!("--share-group={prefix}"),
                &format!("--client-id={prefix}-peer"),
                &format!("--receive-maximum={}", env.receive_maximum),
                &format!("--bootstrap={}", env.bootstrap()),
                &format!("--topic={topic}"),
            ])
            .args(extra),
    )?;
    let lines = lines(&mut child);
    expect_line(&lines, "subscribed", Duration::from_secs(30))?;
    Ok((Running::Process(child), None))
}

/// The no-op subscriber, subscribed.
fn ceiling(setup: Setup) -> anyhow::Result<(Child, Receiver<String>)> {
    let Setup {
        env,
        load,
        port,
        prefix,
        ..
    } = setup;
    let mut child = child(Command::new(&env.exe).args([
        "ceiling",
        &format!("--port={port}"),
        &format!("--filter={prefix}/#"),
        &format!("--group={prefix}"),
        &format!("--consumers={}", env.consumers),
        &format!("--receive-maximum={}", env.receive_maximum),
        &format!("--count={}", load.count),
        &format!("--stall={}s", env.stall.as_secs()),
    ]))?;
    let lines = lines(&mut child);
    expect_line(&lines, "subscribed", Duration::from_secs(30))?;
    Ok((child, lines))
}

/// A bridge with one route from the run's broker to the second one, each message to its own
/// topic there (the default `mqtt_topic`, `{topic}`).
fn broker_config(setup: Setup) -> String {
    let Setup {
        env,
        port,
        second,
        prefix,
        dir,
        ..
    } = setup;
    format!(
        "shutdown_timeout = \"10s\"\n\
         [mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\nclient_id_prefix = \"{prefix}\"\n\
         receive_maximum = {}\n\
         [connections.second]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{second}\"\n\
         client_id_prefix = \"{prefix}\"\n\
         [dead_letter]\npath = \"{}\"\n\
         [[routes]]\nname = \"bench\"\nconnection = \"second\"\n\
         source = {{ filters = [\"{prefix}/#\"], consumers = {} }}\n",
        env.receive_maximum,
        dir.join("dead-letter.jsonl").display(),
        env.consumers,
    )
}

/// A bridge with one downlink from the run's Kafka or RocketMQ topic to `{prefix}/down`.
fn downlink_config(setup: Setup, admin: u16) -> String {
    let Setup {
        env,
        system,
        port,
        prefix,
        topic,
        dir,
        ..
    } = setup;
    let source = match system.inner() {
        System::DownRocketmq | System::DrainRocketmq => format!(
            "type = \"rocketmq\"\nnamesrv = [\"{}\"]\n",
            env.rocketmq().servers.namesrv()
        ),
        _ => format!(
            "type = \"kafka\"\nbootstrap_servers = \"{}\"\n",
            env.bootstrap()
        ),
    };
    format!(
        "shutdown_timeout = \"10s\"\n\
         [mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\nclient_id_prefix = \"{prefix}\"\n\
         [admin]\nlisten = \"127.0.0.1:{admin}\"\n\
         [connections.source]\n{source}\
         [dead_letter]\npath = \"{}\"\n\
         [[downlinks]]\nname = \"bench\"\nconnection = \"source\"\ntopic = \"{topic}\"\n\
         mqtt_topic = \"{prefix}/down\"\nstart = \"earliest\"\n",
        dir.join("dead-letter.jsonl").display(),
    )
}

/// Writes one message the count ignores and waits until the downlink published it: the
/// consumer has joined its group and has its partitions before the clock starts.
fn warm_up(setup: Setup, bridge: &Bridge, admin: u16) -> anyhow::Result<()> {
    let Setup {
        env, system, topic, ..
    } = setup;
    match system.inner() {
        System::DownRocketmq => {
            let rocketmq = env.rocketmq();
            env.rt.block_on(async {
                let producer = rocketmq.client.producer(&rocketmq.servers.namesrv()).await;
                common::rocketmq::send(&producer, topic, "warm-up", "warm-up", &[], "warm-up")
                    .await;
                producer.clone().shutdown().await;
            });
        }
        _ => env.rt.block_on(async {
            let producer = common::kafka::producer(&env.bootstrap());
            common::kafka::produce(&producer, topic, None, &[], "warm-up").await;
        }),
    }
    common::wait_port(admin, Duration::from_secs(30));
    let published = "mqbridge_messages_delivered_total";
    let up = env
        .rt
        .block_on(bridge.wait_metric(admin, published, 1.0, Duration::from_secs(60)));
    if !up {
        bail!(
            "the downlink published nothing within 60 s:\n{}",
            bridge.log_text()
        );
    }
    Ok(())
}

/// Starts the bridge process: this build, or the baseline's for a baseline system.
fn bridge_process(setup: Setup, config: &str) -> anyhow::Result<Bridge> {
    Ok(match setup.system {
        System::Base(_) => {
            let bin = setup
                .env
                .baseline
                .clone()
                .context("--baseline is not set")?;
            Bridge::start_bin(bin, config)
        }
        _ => Bridge::start(config),
    })
}

/// Starts the bridge (this build, or the baseline for the base-* systems) and waits until
/// every consumer is subscribed.
fn start_bridge(setup: Setup, config: String) -> anyhow::Result<Bridge> {
    let Setup { env, load, .. } = setup;
    let bridge = bridge_process(setup, &config)?;
    let consumers = load.width.unwrap_or(env.consumers as usize);
    let limit = Duration::from_secs(30 + consumers as u64 / 10);
    if !bridge.subscribed_within(consumers, limit) {
        bail!(
            "bridge not subscribed after {limit:?}:\n{}",
            bridge.log_text()
        );
    }
    Ok(bridge)
}

/// Fills the `drain-disk` route's buffer: the bridge runs with its Kafka connection pointed at
/// a port where nothing listens, takes every message into the buffer, and is stopped.
fn fill_buffer(setup: Setup) -> anyhow::Result<PublishReport> {
    let Setup {
        env,
        load,
        port,
        prefix,
        ..
    } = setup;
    let admin = common::free_port();
    let config = bridge_config(setup, None).replace(
        &env.bootstrap(),
        &format!("127.0.0.1:{}", common::free_port()),
    ) + &format!("[admin]\nlisten = \"127.0.0.1:{admin}\"\n");
    let bridge = start_bridge(setup, config)?;
    let report = publish(env, load, topics(setup.system, load), port, prefix)?;
    let written = "mqbridge_buffer_written_total";
    let limit = Duration::from_secs(300);
    let all = env
        .rt
        .block_on(bridge.wait_metric(admin, written, load.count as f64, limit));
    if !all {
        bail!(
            "the buffer took fewer than {} messages within {limit:?}:\n{}",
            load.count,
            bridge.log_text()
        );
    }
    stop_bridge(bridge);
    Ok(report)
}

/// The disk buffer of `file-disk`, `kafka-disk` and `drain-disk`: large enough for any run.
const DISK: &str = "buffer = { type = \"disk\", max_size = \"16GiB\" }\n";

/// The rules of `file-rules`: a condition every benchmark payload passes and a transform that
/// reads the payload's header into properties and a key and rewrites its filler, keeping the
/// header (sequence number and send time) where the observer reads it.
const RULES: &str = "where = 'length(string!(.payload)) >= 30'\n\
transform = \'\'\'\n\
text = string!(.payload)\n\
.properties.seq = slice!(text, 0, 10)\n\
.properties.sent = slice!(text, 11, 30)\n\
.destination.key = .properties.seq\n\
.payload = slice!(text, 0, 31) + upcase(slice!(text, 31))\n\
\'\'\'\n";

/// The bridge's config for `setup`; `function_port` is the function's, for the http systems.
fn bridge_config(setup: Setup, function_port: Option<u16>) -> String {
    let Setup {
        env,
        system,
        load,
        port,
        prefix,
        topic,
        dir,
        ..
    } = setup;
    let sink = match (system.inner(), function_port) {
        (System::File | System::FileRules | System::FileDisk, _) => format!(
            "type = \"file\"\npath = \"{}\"\n",
            dir.join("out.jsonl").display()
        ),
        (_, Some(port)) => format!("type = \"http\"\nurl = \"http://127.0.0.1:{port}/\"\n"),
        (System::Rocketmq, _) => format!(
            "type = \"rocketmq\"\nnamesrv = [\"{}\"]\n",
            env.rocketmq().servers.namesrv()
        ),
        _ => format!(
            "type = \"kafka\"\nbootstrap_servers = \"{}\"\n",
            env.bootstrap()
        ),
    };
    // Only the disk-buffer systems name a data_dir: a baseline build may not know the key.
    let data_dir = match matches!(
        system.inner(),
        System::FileDisk | System::KafkaDisk | System::DrainDisk
    ) {
        true => format!("data_dir = \"{}\"\n", dir.join("data").display()),
        false => String::new(),
    };
    let mut config = format!(
        "shutdown_timeout = \"10s\"\n{data_dir}\
         [mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\nclient_id_prefix = \"{prefix}\"\n\
         receive_maximum = {}\n\
         [connections.sink]\n{sink}\
         [dead_letter]\npath = \"{}\"\n",
        env.receive_maximum,
        dir.join("dead-letter.jsonl").display(),
    );
    // The keys of the route's kind: the Kafka or RocketMQ topic, or the function route's
    // batching. Kafka and RocketMQ routes batch by the defaults: `batch_size = 500`,
    // `max_wait = 0`, `concurrency = 4`.
    let kind_keys = match system.inner() {
        System::Kafka | System::Rocketmq => format!("topic = \"{topic}\"\n"),
        System::KafkaDisk | System::DrainDisk => format!("topic = \"{topic}\"\n{DISK}"),
        System::FileDisk => DISK.to_owned(),
        System::Http(h) => h.route_keys(),
        System::FileRules => RULES.to_owned(),
        _ => String::new(),
    };
    match load.width {
        None => {
            config += &format!(
                "[[routes]]\nname = \"bench\"\nfilters = [\"{prefix}/#\"]\nconnection = \"sink\"\n\
                 consumers = {}\n{kind_keys}",
                env.consumers
            )
        }
        Some(routes) => {
            for r in 0..routes {
                config += &format!(
                    "[[routes]]\nname = \"r{r}\"\nfilters = [\"{prefix}/{r}/#\"]\n\
                     connection = \"sink\"\n{kind_keys}"
                );
            }
        }
    }
    config
}

fn publish(
    env: &Env,
    load: Load,
    topics: usize,
    port: u16,
    prefix: &str,
) -> anyhow::Result<PublishReport> {
    helper(
        env,
        load,
        &[
            "publish",
            &format!("--port={port}"),
            &format!("--size={}", load.size),
            &format!("--connections={}", env.publishers),
            &format!("--prefix={prefix}"),
            &format!("--topics={topics}"),
        ],
    )
}

fn produce(env: &Env, load: Load, topic: &str) -> anyhow::Result<PublishReport> {
    helper(
        env,
        load,
        &[
            "produce",
            &format!("--bootstrap={}", env.bootstrap()),
            &format!("--topic={topic}"),
            &format!("--size={}", load.size),
        ],
    )
}

fn rocketmq_produce(env: &Env, load: Load, topic: &str) -> anyhow::Result<PublishReport> {
    helper(
        env,
        load,
        &[
            "rocketmq-produce",
            &format!("--namesrv={}", env.rocketmq().servers.namesrv()),
            &format!("--topic={topic}"),
            &format!("--size={}", load.size),
        ],
    )
}

/// Runs the publisher or a producer to the end and reads its report.
fn helper(env: &Env, load: Load, args: &[&str]) -> anyhow::Result<PublishReport> {
    let out = Command::new(&env.exe)
        .args(args)
        .arg(format!("--count={}", load.count))
        .arg(format!("--rate={}", load.rate))
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running the {}", args[0]))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default();
    let report: PublishReport =
        serde_json::from_str(last).with_context(|| format!("{} output {text:?}", args[0]))?;
    if report.acked < load.count {
        bail!(
            "the broker acknowledged {} of {} messages",
            report.acked,
            load.count
        );
    }
    Ok(report)
}

fn child(cmd: &mut Command) -> anyhow::Result<Child> {
    common::die_with_parent(cmd)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))
}

/// The child's standard output, a line at a time.
fn lines(child: &mut Child) -> Receiver<String> {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn next_line(lines: &mut Receiver<String>, limit: Duration) -> anyhow::Result<String> {
    match lines.recv_timeout(limit) {
        Ok(line) => Ok(line),
        Err(RecvTimeoutError::Timeout) => bail!("no output after {limit:?}"),
        Err(RecvTimeoutError::Disconnected) => bail!("the process exited"),
    }
}

fn expect_line(lines: &Receiver<String>, want: &str, limit: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let left = limit.saturating_sub(start.elapsed());
        match lines.recv_timeout(left) {
            Ok(line) if line.trim() == want => return Ok(()),
            Ok(_) => continue,
            Err(_) => bail!("no {want:?} line within {limit:?}"),
        }
    }
}
