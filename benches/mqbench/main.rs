//! mqbench: mqbridge against the broker's own ceiling and against two peers, a hand-written
//! Python bridge and a bridge on the mq-bridge crate, on real servers started on loopback.
//! `scripts/bench` runs it; BENCHMARKS.md keeps results.
//!
//! One binary, six roles: `run` (the default) orchestrates everything; `publish`, `ceiling`,
//! `produce`, `rocketmq-produce` and `function` are the MQTT publisher, the no-op subscriber, a
//! Kafka producer, a RocketMQ producer and a no-op HTTP function, each started by `run` as a
//! process of its own so that its CPU time and memory are its own.
//!
//! # Layout
//! - `payload`: the sequence number and send time carried in every message.
//! - `tally`: counting unique messages and their latency at a sink.
//! - `publisher`, `ceiling`, `produce`, `rocketmq`, `function`: the helper roles.
//! - `observe`: following the file sink and the Kafka or RocketMQ topic from this process.
//! - `systems`: one measured run of one system under one load.
//! - `report`: the tables and ratios.

#[path = "../../tests/common/mod.rs"]
mod common;

mod ceiling;
mod function;
mod observe;
mod payload;
mod produce;
mod publisher;
mod report;
mod rocketmq;
mod systems;
mod tally;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use systems::{Env, Load, Outcome, Rocketmq, System};

#[derive(Parser)]
#[command(about = "Benchmarks mqbridge against the broker's ceiling and its peers")]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
}

#[derive(Subcommand)]
enum Role {
    /// Runs the whole benchmark (the default).
    Run(RunArgs),
    /// The publisher process.
    Publish(publisher::PublishArgs),
    /// The no-op subscriber process.
    Ceiling(ceiling::CeilingArgs),
    /// The Kafka producer process (the Kafka broker's own limit).
    Produce(produce::ProduceArgs),
    /// The RocketMQ producer process (the RocketMQ broker's own limit).
    RocketmqProduce(rocketmq::RocketmqProduceArgs),
    /// The no-op HTTP function process.
    Function(function::FunctionArgs),
}

#[derive(Parser, Debug)]
struct RunArgs {
    /// Messages per run.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Payload sizes in bytes; latency is measured at the first.
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1024, 16384])]
    sizes: Vec<usize>,
    /// A run carries at most this many payload bytes (larger payloads get fewer messages).
    #[arg(long, default_value_t = 400_000_000)]
    max_bytes: u64,
    /// Fixed publish rates for latency, in percent of the ceiling's throughput; `--rates` with
    /// no value skips the latency runs.
    #[arg(long, value_delimiter = ',', num_args = 0.., default_values_t = [25, 50, 80])]
    rates: Vec<u32>,
    /// Systems to measure: ceiling, kafka-alone, file, kafka, peer; mq-bridge (a second peer:
    /// MQTT → Kafka on the mq-bridge crate, benches/peers/mq-bridge, whose binary
    /// MQBRIDGE_BENCH_MQ_BRIDGE names); rocketmq-alone (a RocketMQ producer batched like the
    /// bridge) and rocketmq (the bridge to RocketMQ); and the bridge
    /// to a no-op HTTP function: http1, http100, http1000 (batch sizes), http-ordered (batch
    /// 100, `ordered = true`, 1,000 topics), http-20ms (batch 1, a function that takes 20 ms, at
    /// most 3,000 messages). Function runs are measured at full speed only. Downlinks:
    /// down-kafka and down-rocketmq (the source's producer at full speed, a downlink, the
    /// no-op subscriber), and drain-kafka and drain-rocketmq (the topic filled first, the clock
    /// started with the bridge), at full speed only. Disk buffers: file-disk and kafka-disk
    /// (the file and Kafka routes behind a disk buffer), and drain-disk (the Kafka route's
    /// buffer filled while Kafka is unreachable, the clock started with the bridge started
    /// again). Between brokers: broker (the bridge from
    /// the run's mosquitto to a second one, the no-op subscriber counting there).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ceiling,kafka-alone,file,kafka,peer"
    )]
    systems: Vec<String>,
    /// Route counts for the width runs (each route its own filter, on shared connections); 0
    /// skips them.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 10, 100, 1000])]
    routes: Vec<usize>,
    /// The sinks of the width runs: file, kafka (every route to one topic).
    #[arg(long, value_delimiter = ',', default_value = "file")]
    width_sinks: Vec<String>,
    /// Runs of each system at full speed, in rounds across the systems; the one with the median
    /// throughput is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Shared-subscription connections of the bridge and of the ceiling subscriber.
    #[arg(long, default_value_t = 2)]
    consumers: u32,
    /// The bridge's and the ceiling subscriber's receive maximum (the bridge's default).
    #[arg(long, default_value_t = 1024)]
    receive_maximum: u16,
    /// Publisher connections.
    #[arg(long, default_value_t = 4)]
    publishers: u64,
    /// Partitions of each Kafka topic, and queues of each RocketMQ topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Where the report is written (it is printed too).
    #[arg(long, default_value = "target/mqbench/report.md")]
    out: PathBuf,
    /// Another build of mqbridge to compare against in the same run: each bridge system and
    /// width run is measured on it too, right after this build, and the report adds the ratios.
    #[arg(long)]
    baseline: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary with no
    // arguments, or with --list under nextest: there is nothing to test here.
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench")
        && !matches!(
            args.get(1).map(String::as_str),
            Some("run" | "publish" | "ceiling" | "produce" | "rocketmq-produce" | "function")
        )
    {
        if args.iter().any(|a| a == "--list") {
            return Ok(());
        }
        eprintln!("mqbench is a benchmark: run it with scripts/bench");
        return Ok(());
    }
    let cli = Cli::parse_from(args.into_iter().filter(|a| a != "--bench"));
    match cli.role {
        Some(Role::Publish(a)) => runtime()?.block_on(publisher::run(a)),
        Some(Role::Ceiling(a)) => runtime()?.block_on(ceiling::run(a)),
        Some(Role::Produce(a)) => runtime()?.block_on(produce::run(a)),
        Some(Role::RocketmqProduce(a)) => runtime()?.block_on(rocketmq::run(a)),
        Some(Role::Function(a)) => runtime()?.block_on(function::run(a)),
        Some(Role::Run(a)) => run(a),
        None => run(RunArgs::parse_from(["run"])),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run(a: RunArgs) -> anyhow::Result<()> {
    let mut systems = Vec::new();
    for name in &a.systems {
        let s = System::parse(name)?;
        systems.push(s);
        if let Some(base) = s.baseline().filter(|_| a.baseline.is_some()) {
            systems.push(base);
        }
    }
    systems.dedup();
    let mut width_systems = Vec::new();
    for name in &a.width_sinks {
        let s = System::parse(name)?;
        if !matches!(s, System::File | System::Kafka) {
            anyhow::bail!("--width-sinks takes file and kafka, not {name:?}");
        }
        width_systems.push(s);
        if let Some(base) = s.baseline().filter(|_| a.baseline.is_some()) {
            width_systems.push(base);
        }
    }
    let widths = a.routes.iter().any(|&r| r > 0);
    let kafka = systems.iter().any(|s| s.uses_kafka())
        || (widths && width_systems.iter().any(|s| s.uses_kafka()));
    let rocketmq = systems.iter().any(|s| s.uses_rocketmq());
    let env = Env {
        exe: std::env::current_exe()?,
        kafka: kafka.then(|| {
            let port = common::free_port();
            common::tansu(port, port)
        }),
        rocketmq: rocketmq.then(Rocketmq::start),
        python: peer_python(),
        mq_bridge: std::env::var_os("MQBRIDGE_BENCH_MQ_BRIDGE").map(PathBuf::from),
        consumers: a.consumers,
        receive_maximum: a.receive_maximum,
        partitions: a.partitions,
        publishers: a.publishers,
        stall: Duration::from_secs(15),
        rt: runtime()?,
        baseline: a.baseline.clone(),
    };
    let mut outcomes = Vec::new();
    let mut failures = Vec::new();
    // Runs each system under `load`, in rounds (A B A B ...) so that drift on this shared
    // machine falls on every system alike; keeps each one's median run.
    let mut measure = |systems: &[System], load: Load| -> Vec<Option<Outcome>> {
        let full_speed = load.rate == 0.0 && load.width.is_none();
        let rounds = if full_speed { a.repeat.max(1) } else { 1 };
        let mut runs: Vec<Option<Vec<Outcome>>> =
            systems.iter().map(|_| Some(Vec::new())).collect();
        for _ in 0..rounds {
            for (&system, runs) in systems.iter().zip(runs.iter_mut()) {
                let Some(done) = runs else { continue };
                eprintln!("mqbench: {} {load:?}", system.name());
                match systems::run(&env, system, load) {
                    Ok(o) => {
                        eprintln!("mqbench:   {}", report::one_line(&o));
                        done.push(o);
                    }
                    Err(e) => {
                        eprintln!("mqbench:   failed: {e:#}");
                        failures.push(format!("{} {load:?}: {e:#}", system.name()));
                        *runs = None;
                    }
                }
            }
        }
        runs.into_iter()
            .map(|r| {
                let chosen = median(r?);
                outcomes.push(chosen.clone());
                Some(chosen)
            })
            .collect()
    };
    let load = |size: usize, rate: f64, width: Option<usize>| Load {
        size,
        count: a.count.min(a.max_bytes / size.max(1) as u64),
        rate,
        width,
    };
    let first = a.sizes.first().copied().unwrap_or(100);
    let ceiling = systems
        .iter()
        .zip(measure(&systems, load(first, 0.0, None)))
        .find(|(s, _)| **s == System::Ceiling)
        .and_then(|(_, o)| o)
        .filter(|o| o.summary.complete())
        .map(|o| o.summary.rate());
    // The fixed rates are fractions of the MQTT ceiling; a function's throughput is its own.
    let paced: Vec<System> = systems
        .iter()
        .copied()
        .filter(|s| s.http().is_none() && !s.downlink())
        .collect();
    if let Some(ceiling) = ceiling {
        for &pct in &a.rates {
            measure(&paced, load(first, ceiling * pct as f64 / 100.0, None));
        }
    }
    for &size in a.sizes.iter().skip(1) {
        measure(&systems, load(size, 0.0, None));
    }
    for &routes in a.routes.iter().filter(|&&r| r > 0) {
        measure(&width_systems, load(first, 0.0, Some(routes)));
    }
    let text = report::markdown(&outcomes, &failures, ceiling, &a.rates, a.repeat);
    println!("{text}");
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&a.out, &text)?;
    eprintln!("mqbench: report written to {}", a.out.display());
    Ok(())
}

/// The run with the median throughput, or the first run that did not deliver everything (a
/// failed run is reported as such, never hidden behind a good one).
fn median(mut runs: Vec<Outcome>) -> Outcome {
    if let Some(i) = runs.iter().position(|o| !o.summary.complete()) {
        return runs.swap_remove(i);
    }
    runs.sort_by(|x, y| x.summary.rate().total_cmp(&y.summary.rate()));
    runs.swap_remove(runs.len() / 2)
}

/// The Python that has the peer's packages: MQBRIDGE_BENCH_PYTHON, else the venv that
/// scripts/bench makes.
fn peer_python() -> PathBuf {
    if let Ok(p) = std::env::var("MQBRIDGE_BENCH_PYTHON") {
        return p.into();
    }
    let home = std::env::var("HOME").unwrap_or_default();
    PathBuf::from(home).join(".cache/mqbridge/bench-venv/bin/python")
}
