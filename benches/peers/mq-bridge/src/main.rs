//! An MQTT → Kafka bridge built on the `mq-bridge` crate (1.3.0): mqbench's second peer, next to
//! the hand-written Python bridge in `benches/peers/paho_kafka.py`, and started by the benchmark
//! with the same flags.
//!
//! It runs one mq-bridge route per `--consumers`: each reads the shared subscription
//! `$share/<group>/<filter>` at QoS 1 over a connection of its own (client id
//! `<client-id>-<n>`, MQTT 5, Receive Maximum `--receive-maximum`) and produces every message to
//! the Kafka topic. The routes are set like mqbridge's Kafka route by default: batches of up to
//! 500 messages, 4 batches sent at once, no compression. mq-bridge acknowledges a PUBLISH only
//! once Kafka has confirmed its record (`acks=all`, idempotent producer), so delivery is
//! at-least-once, as with the other two.
//!
//! What is left to the library: the record key (mq-bridge keys by its own message id, not by the
//! MQTT topic), the producer's `linger.ms` (1 ms for an awaited batch), and one Kafka producer
//! shared by the routes (the library shares producers with the same settings).
//!
//! Prints `subscribed` on stdout once every route has started: mq-bridge starts an MQTT source
//! only after the broker's SUBACK, so the subscriptions are in place by then. Runs until SIGTERM
//! or SIGINT, then stops the routes, which finish the batches they hold.

use std::io::Write;

use anyhow::Context;
use clap::Parser;
use mq_bridge::models::{Endpoint, EndpointType, KafkaConfig, MqttConfig};
use mq_bridge::Route;
use tokio::signal::unix::{signal, SignalKind};

/// mqbridge's defaults for a Kafka route: `batch_size` and `concurrency`.
const BATCH_SIZE: usize = 500;
const CONCURRENCY: usize = 4;

#[derive(Parser, Debug)]
#[command(about = "MQTT -> Kafka bridge on the mq-bridge crate (mqbench's peer)")]
struct Args {
    #[arg(long)]
    mqtt_host: String,
    #[arg(long)]
    mqtt_port: u16,
    /// MQTT topic filter, e.g. bench/#.
    #[arg(long)]
    filter: String,
    #[arg(long)]
    share_group: String,
    /// The routes' client ids are this with `-0`, `-1`, ... appended.
    #[arg(long)]
    client_id: String,
    /// MQTT 5 Receive Maximum of each connection: QoS 1 messages in flight to it.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u16).range(1..))]
    receive_maximum: u16,
    /// Kafka bootstrap servers.
    #[arg(long)]
    bootstrap: String,
    /// Kafka topic.
    #[arg(long)]
    topic: String,
    /// Routes, each with its own MQTT connection in the share group.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    consumers: u32,
    /// Messages per batch.
    #[arg(long, default_value_t = BATCH_SIZE)]
    batch_size: usize,
    /// Batches sent to Kafka at once, per route.
    #[arg(long, default_value_t = CONCURRENCY)]
    concurrency: usize,
}

/// Route `n`: one MQTT connection in the share group, to the Kafka topic.
fn route(args: &Args, n: u32) -> Route {
    let mut mqtt = MqttConfig::new(format!("mqtt://{}:{}", args.mqtt_host, args.mqtt_port))
        .with_topic(format!("$share/{}/{}", args.share_group, args.filter))
        .with_client_id(format!("{}-{n}", args.client_id));
    mqtt.qos = Some(1);
    // The window the broker may fill (Receive Maximum), and the queue between the MQTT event
    // loop and the route as large: with the library's default queue of 100 no batch could
    // hold more than 100 messages.
    mqtt.max_inflight = Some(args.receive_maximum);
    mqtt.queue_capacity = Some(usize::from(args.receive_maximum).max(args.batch_size));

    let mut kafka = KafkaConfig::new(&args.bootstrap)
        .with_topic(&args.topic)
        // mqbridge's default; the library's is lz4.
        .with_producer_option("compression.type", "none");
    // The benchmark creates the topic with its partitions.
    kafka.create_topic = Some(false);

    Route::new(
        Endpoint::new(EndpointType::Mqtt(mqtt)),
        Endpoint::new(EndpointType::Kafka(kafka)),
    )
    .with_batch_size(args.batch_size)
    .with_concurrency(args.concurrency)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .init();

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;

    let mut handles = Vec::new();
    for n in 0..args.consumers {
        let name = format!("mqtt-to-kafka-{n}");
        let handle = route(&args, n)
            .run(&name)
            .await
            .with_context(|| format!("starting route {name}"))?;
        handles.push(handle);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "subscribed")?;
    out.flush()?;
    drop(out);

    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    for handle in &handles {
        if let Some(outcome) = handle.outcome() {
            eprintln!("mq-bridge peer: a route had ended before the stop: {outcome:?}");
        }
        handle.stop().await;
    }
    for handle in handles {
        handle.join().await.context("a route's task failed")?;
    }
    Ok(())
}
