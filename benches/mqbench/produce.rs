//! The `produce` role: the Kafka broker's own limit on this machine. A Rust producer with the
//! bridge's librdkafka settings (mqbridge's own `client_config`: idempotent, `acks=all`,
//! `linger.ms=5`) writes the benchmark's messages straight to the topic, no MQTT involved,
//! paced like the MQTT publisher, and waits for every delivery report.

use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::payload;
use crate::publisher::PublishReport;

#[derive(clap::Args, Debug, Clone)]
pub struct ProduceArgs {
    #[arg(long)]
    pub bootstrap: String,
    #[arg(long)]
    pub topic: String,
    #[command(flatten)]
    pub stream: payload::Stream,
}

/// Deliveries awaited at once; librdkafka queues and batches them.
const WINDOW: usize = 10_000;

pub async fn run(a: ProduceArgs) -> anyhow::Result<()> {
    let connection: mqbridge::connectors::kafka::KafkaConnectionConfig =
        toml::from_str(&format!("bootstrap_servers = {:?}", a.bootstrap))?;
    let producer: FutureProducer =
        mqbridge::connectors::kafka::client_config(&connection).create()?;
    // Like the bridge, which is connected before anything is published: the topic's metadata
    // and the idempotent producer's id are fetched before the clock starts.
    producer
        .client()
        .fetch_metadata(Some(&a.topic), Duration::from_secs(10))?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start_ns = payload::now_ns();
    let t0 = Instant::now();
    let mut pending = FuturesUnordered::new();
    let mut acked = 0;
    for seq in 0..a.stream.count {
        while pending.len() >= WINDOW {
            acked += u64::from(matches!(pending.next().await, Some(Ok(Ok(_)))));
        }
        let body = a.stream.next(t0, seq).await;
        let key = format!("bench/{}/m", seq % 64);
        let record = FutureRecord::to(&a.topic).payload(&body).key(&key);
        match producer.send_result(record) {
            Ok(delivery) => pending.push(delivery),
            Err((e, _)) => anyhow::bail!("enqueueing record {seq}: {e}"),
        }
    }
    while let Some(result) = pending.next().await {
        acked += u64::from(matches!(result, Ok(Ok(_))));
    }
    let report = PublishReport {
        start_ns,
        end_ns: payload::now_ns(),
        acked,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
