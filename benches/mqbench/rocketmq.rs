//! The `rocketmq-produce` role: the RocketMQ broker's own limit on this machine. A producer of
//! rocketmq-client-rust with the bridge's settings (send timeout 3 s, 4 MiB message limit)
//! writes the benchmark's messages straight to the topic, no MQTT involved, the way the bridge
//! sends a route's batches: up to `--batch` messages a batch (the bridge's `batch_size`), up to
//! `--concurrency` batches out at once (the route's `concurrency`), a batch taking whatever is
//! due when a slot frees up. Each message carries a key and the seven properties the bridge
//! always sets, of the same lengths, so the broker stores what it stores from the bridge.

use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use rocketmq_client_rust::{DefaultMQProducer, SendStatus};
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::common::message::MessageTrait;

use crate::common::rocketmq::Client;
use crate::payload;
use crate::publisher::PublishReport;

/// The bridge's defaults: a route's `batch_size` and `concurrency`, the connection's
/// `send_timeout`, RocketMQ's largest message.
pub const BATCH_SIZE: usize = 500;
pub const CONCURRENCY: usize = 4;
const SEND_TIMEOUT_MS: u64 = 3000;
const MAX_MESSAGE: u32 = 4 * 1024 * 1024;

#[derive(clap::Args, Debug, Clone)]
pub struct RocketmqProduceArgs {
    #[arg(long)]
    pub namesrv: String,
    #[arg(long)]
    pub topic: String,
    #[arg(long, default_value_t = BATCH_SIZE)]
    pub batch: usize,
    #[arg(long, default_value_t = CONCURRENCY)]
    pub concurrency: usize,
    #[command(flatten)]
    pub stream: payload::Stream,
}

pub async fn run(a: RocketmqProduceArgs) -> anyhow::Result<()> {
    let client = Client::new();
    let mut producer = DefaultMQProducer::builder(client.runtime.clone())
        .producer_group(crate::common::unique("bench_alone").as_str())
        .name_server_addr(a.namesrv.as_str())
        .send_msg_timeout(SEND_TIMEOUT_MS as u32)
        .max_message_size(MAX_MESSAGE)
        .build();
    producer.start().await?;
    // Like the bridge, which is connected before anything is published: the topic's route is
    // known before the clock starts (the bridge fetches it with its first batch, which is in
    // its figures: this is the kinder comparison for the broker alone).
    let queues = producer.fetch_publish_message_queues(&a.topic).await?;
    anyhow::ensure!(!queues.is_empty(), "topic {} has no queues", a.topic);
    let start_ns = payload::now_ns();
    let t0 = Instant::now();
    let (mut pending, mut acked, mut seq) = (FuturesUnordered::new(), 0, 0);
    let (batch, producer) = (a.batch.max(1), &producer);
    while seq < a.stream.count {
        while pending.len() >= a.concurrency.max(1) {
            acked += pending.next().await.unwrap_or(Ok(0))?;
        }
        let mut messages = vec![message(&a.topic, seq, a.stream.next(t0, seq).await)?];
        seq += 1;
        while messages.len() < batch && seq < a.stream.count && due(&a.stream, t0, seq) {
            messages.push(message(&a.topic, seq, a.stream.next(t0, seq).await)?);
            seq += 1;
        }
        let n = messages.len() as u64;
        pending.push(async move {
            let sent = producer
                .send_batch_with_timeout(messages, SEND_TIMEOUT_MS)
                .await;
            match sent {
                Ok(r) if r.send_status == SendStatus::SendOk => Ok(n),
                Ok(r) => anyhow::bail!("a batch was answered {:?}", r.send_status),
                Err(e) => anyhow::bail!("sending a batch: {e}"),
            }
        });
    }
    while let Some(sent) = pending.next().await {
        acked += sent?;
    }
    let report = PublishReport {
        start_ns,
        end_ns: payload::now_ns(),
        acked,
    };
    drop(pending);
    producer.clone().shutdown().await;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Whether message `seq` is due to be sent already.
fn due(stream: &payload::Stream, t0: Instant, seq: u64) -> bool {
    stream.rate <= 0.0 || t0 + Duration::from_secs_f64(seq as f64 / stream.rate) <= Instant::now()
}

/// The message as the bridge would send it: a key of a UUID's length, the MQTT metadata.
fn message(topic: &str, seq: u64, body: Vec<u8>) -> anyhow::Result<Message> {
    let ms = payload::now_ns() / 1_000_000;
    let id = format!("{:08x}-0000-7000-8000-{seq:012x}", ms as u32);
    let mut m = Message::builder()
        .topic(topic)
        .body(body)
        .key(id.as_str())
        .build()?;
    let properties = [
        ("mqtt_topic", format!("bench-00000000/{}/m", seq % 64)),
        ("mqtt_qos", "1".into()),
        ("mqtt_retained", "false".into()),
        ("mqtt_duplicate", "false".into()),
        ("mqtt_packet_id", (seq % 65535 + 1).to_string()),
        ("mqtt_message_id", id),
        ("mqtt_timestamp", ms.to_string()),
    ];
    for (name, value) in properties {
        m.put_user_property(name.into(), value.as_str().into())?;
    }
    Ok(m)
}
