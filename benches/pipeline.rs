//! The pipeline alone, in one process, without MQTT or Kafka: messages handed to routes'
//! pipelines as a source would, delivered to a file sink (or to a sink that only counts) and
//! acknowledged to an acker that only counts. Prints the CPU time per message, the cost the
//! bridge adds per message on top of the network and the sink's client. Two shapes:
//! `flood` (one route, two lanes, 64 topics, as fast as it takes them) and `width` (1,000 routes
//! of one lane, a message at a time each, as the benchmark's width runs load it).
//!
//! With `--rules`, each route has a `where` and a `transform` (`RULES_WHERE`,
//! `RULES_TRANSFORM`) over a JSON payload of about 100 bytes: the difference between two runs
//! is the CPU the rules take per message.
//!
//! `cargo bench --bench pipeline [-- flood|width] [--null] [--rules] [--scale 0.1]`

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mqbridge::config::parse_str;
use mqbridge::dead_letter::DeadLetter;
use mqbridge::events::RouteMetrics;
use mqbridge::flow::{Acker, Delivery, Pause, RouteStats, Sink, SinkError};
use mqbridge::message::{Message, Properties, Publisher};
use mqbridge::pipeline::{Context, Pipeline, Settings};
use mqbridge::rules::RuleSpec;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Acks counted, and a wake-up for whoever waits for a count.
#[derive(Default)]
struct Acked {
    count: AtomicU64,
    changed: tokio::sync::Notify,
}

impl Acked {
    async fn wait_for(&self, n: u64) {
        loop {
            let changed = self.changed.notified();
            if self.count.load(Ordering::Acquire) >= n {
                return;
            }
            changed.await;
        }
    }
}

struct CountingAcker(Arc<Acked>);

#[async_trait]
impl Acker for CountingAcker {
    type Token = ();
    async fn ack(&self, released: Vec<((), bool)>) {
        self.0
            .count
            .fetch_add(released.len() as u64, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
    async fn close(&self) {}
}

struct NullSink;

#[async_trait]
impl Sink for NullSink {
    async fn send(&self, batch: &[&Message]) -> Vec<Result<(), SinkError>> {
        batch.iter().map(|_| Ok(())).collect()
    }
}

static PAYLOAD: [u8; 100] = [b'x'; 100];

/// A condition that passes 95 % of the messages `message` makes with `json`.
const RULES_WHERE: &str = "int!(.payload.battery) < 95";
/// A projection with a key per message.
const RULES_TRANSFORM: &str = r#"
.payload = { "plate": .payload.plate, "battery": .payload.battery, "at": .timestamp }
.destination.key = string!(.payload.plate)
"#;

fn message(topic: String, n: u64, json: bool) -> Message {
    let payload = match json {
        true => bytes::Bytes::from(format!(
            r#"{{"plate":"B-AB-{:03}","battery":{},"speed":{},"lat":52.520008,"lon":13.404954}}"#,
            n % 1000,
            n % 100,
            n % 130
        )),
        false => bytes::Bytes::from_static(&PAYLOAD),
    };
    Message {
        id: uuid::Uuid::now_v7(),
        topic,
        payload,
        qos: 1,
        retain: false,
        dup: false,
        packet_id: (n % 65_000) as u16 + 1,
        properties: Properties::default(),
        timestamp_ms: 0,
        publisher: Publisher::default(),
        origin: None,
        destination: None,
    }
}

fn cpu_seconds() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

async fn file_sink(dir: &std::path::Path) -> Arc<dyn Sink> {
    let text = "[mqtt]\nurl = \"mqtt://127.0.0.1:1\"\n[connections.out]\ntype = \"file\"\n\
                path = \"out.jsonl\"\n[[routes]]\nname = \"r\"\nfilters = [\"#\"]\nconnection = \"out\"\n";
    let config = parse_str(text, dir, &|_| None).expect("config");
    let connection = config.connections["out"]
        .connect("out")
        .await
        .expect("open");
    let route = &config.routes[0];
    let client = route.client();
    let context = mqbridge::connectors::SinkContext {
        name: &route.name,
        client: &client,
        ordered: route.is_ordered(),
        in_flight: route.concurrency * route.batch_size,
        vocabulary: mqbridge::template::Vocabulary::Mqtt,
    };
    connection.sink(&context, &route.sink).expect("sink")
}

async fn run(shape: &str, null: bool, rules: bool, scale: f64) {
    let (routes, lanes, per_route) = match shape {
        "width" => (1_000, 1, (200.0 * scale) as u64),
        _ => (1, 2, (400_000.0 * scale) as u64),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let sink: Arc<dyn Sink> = match null {
        true => Arc::new(NullSink),
        false => file_sink(dir.path()).await,
    };
    let dead = mqbridge::connectors::file::FileWriter::open(&dir.path().join("dead.jsonl"), false)
        .await
        .expect("dead letters");
    let dead = Arc::new(DeadLetter::File(Arc::new(dead)));
    let acked = Arc::new(Acked::default());
    let shutdown = CancellationToken::new();
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for r in 0..routes {
        let name = format!("r{r}");
        let ctx = Arc::new(Context {
            route: name.as_str().into(),
            metrics: RouteMetrics::new(&name, lanes, Arc::new(RouteStats::default())),
            max_attempts: 3,
            sink: sink.clone(),
            dead_letter: dead.clone(),
            // As a route runs by default: each message is looked at for the origin marker.
            skip_marked: Some("mqbridge-origin".into()),
            rules: rules.then(|| {
                let spec = RuleSpec {
                    filter: Some(RULES_WHERE.into()),
                    transform: Some(RULES_TRANSFORM.into()),
                    schema: None,
                };
                Arc::new(spec.compile().expect("rules").expect("some"))
            }),
            shutdown: shutdown.clone(),
            hard_stop: CancellationToken::new(),
            pause: Arc::new(Pause::new(false)),
        });
        let (tx, intake) = mpsc::unbounded_channel();
        let ackers = (0..lanes).map(|_| CountingAcker(acked.clone())).collect();
        let settings = Settings {
            batch_size: 500,
            max_wait: Duration::ZERO,
            ordered: true,
            concurrency: 4,
            window: 1,
        };
        let pipeline = Pipeline {
            ctx,
            settings,
            intake,
            ackers,
        };
        tasks.push(tokio::spawn(pipeline.run()));
        senders.push(tx);
    }
    let total = routes as u64 * per_route;
    // As the MQTT source does: the route's consumers hash topics into order keys.
    let order = std::hash::RandomState::new();
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let topics: Vec<Vec<String>> = (0..routes)
        .map(|r| (0..64).map(|t| format!("t/{r}/{t}")).collect())
        .collect();
    for n in 0..per_route {
        for (r, tx) in senders.iter().enumerate() {
            let topic = topics[r][(n % 64) as usize].clone();
            let lane = (n % lanes as u64) as usize;
            let msg = message(topic, n, rules);
            let _ = tx.send(Box::new(Delivery {
                lane,
                key: order.hash_one(&msg.topic),
                msg,
                token: (),
            }));
        }
        if shape == "width" {
            // A message per route at a time, as a broker spreads them.
            acked.wait_for((n + 1) * routes as u64).await;
        } else if n % 1024 == 0 {
            // Stay within a window of held messages, as a broker's flow control would.
            acked
                .wait_for((n * routes as u64).saturating_sub(4096))
                .await;
        }
    }
    acked.wait_for(total).await;
    let (cpu, wall) = (cpu_seconds() - cpu0, t0.elapsed());
    println!(
        "{shape} ({}{}): {total} messages, {:.0} msg/s, {:.2} µs CPU per message",
        if null { "null sink" } else { "file sink" },
        if rules { ", where + transform" } else { "" },
        total as f64 / wall.as_secs_f64(),
        cpu / total as f64 * 1e6
    );
    shutdown.cancel();
    for t in tasks {
        let _ = t.await;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let null = args.iter().any(|a| a == "--null");
    let rules = args.iter().any(|a| a == "--rules");
    // `--scale 0.1`: a tenth of the messages (for slow tools such as callgrind).
    let scale = args
        .iter()
        .position(|a| a == "--scale")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(1.0);
    let shapes: Vec<&str> = ["flood", "width"]
        .into_iter()
        .filter(|s| {
            args.iter().any(|a| a == s) || !args.iter().any(|a| a == "flood" || a == "width")
        })
        .collect();
    if !args.iter().any(|a| a == "--bench") {
        return; // `cargo test --all-targets` runs benches with no arguments: nothing to test.
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for shape in shapes {
        runtime.block_on(run(shape, null, rules, scale));
    }
}
