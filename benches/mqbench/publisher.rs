//! The `publish` role: a separate process that sends `count` QoS 1 messages of `size` bytes over
//! several connections, as fast as the broker takes them or paced at a fixed rate, and waits for
//! the broker's PUBACK of every one. Message `seq` goes to `{prefix}/{seq % topics}/m`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::NetworkOptions;
use serde::{Deserialize, Serialize};

use crate::payload;

#[derive(clap::Args, Debug, Clone)]
pub struct PublishArgs {
    #[arg(long)]
    pub port: u16,
    #[command(flatten)]
    pub stream: payload::Stream,
    #[arg(long, default_value_t = 4)]
    pub connections: u64,
    #[arg(long)]
    pub prefix: String,
    #[arg(long, default_value_t = 64)]
    pub topics: u64,
}

/// What the publisher prints as its last line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishReport {
    pub start_ns: u64,
    pub end_ns: u64,
    pub acked: u64,
}

impl PublishReport {
    /// Messages per second the broker acknowledged.
    pub fn rate(&self) -> f64 {
        self.acked as f64 / (self.end_ns.saturating_sub(self.start_ns).max(1) as f64 / 1e9)
    }
}

pub async fn run(a: PublishArgs) -> anyhow::Result<()> {
    let acked = Arc::new(AtomicU64::new(0));
    let clients: Vec<AsyncClient> = (0..a.connections.max(1))
        .map(|c| connect(&a, c, acked.clone()))
        .collect();
    let start_ns = payload::now_ns();
    let t0 = Instant::now();
    for seq in 0..a.stream.count {
        let topic = format!("{}/{}/m", a.prefix, seq % a.topics.max(1));
        let body = a.stream.next(t0, seq).await;
        clients[(seq % clients.len() as u64) as usize]
            .publish(topic, QoS::AtLeastOnce, false, body)
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.load(Ordering::Relaxed) < a.stream.count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let report = PublishReport {
        start_ns,
        end_ns: payload::now_ns(),
        acked: acked.load(Ordering::Relaxed),
    };
    println!("{}", serde_json::to_string(&report)?);
    for c in &clients {
        let _ = c.disconnect().await;
    }
    Ok(())
}

/// What the benchmark's own MQTT clients share: loopback, no Nagle delay (as the bridge's
/// consumers), packets up to 4 MiB.
pub fn options(client_id: String, port: u16) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(Some(4 * 1024 * 1024));
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    o.set_network_options(net);
    o
}

fn connect(a: &PublishArgs, n: u64, acked: Arc<AtomicU64>) -> AsyncClient {
    let mut o = options(format!("{}-pub-{n}", a.prefix), a.port);
    o.set_outgoing_inflight_upper_limit(1000);
    let (client, mut eventloop) = AsyncClient::new(o, 1000);
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("publisher connection {n}: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    client
}
