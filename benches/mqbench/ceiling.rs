//! The `ceiling` role: the broker's own limit on this machine. A no-op MQTT v5 subscriber in
//! its own process, with as many shared-subscription connections and the same receive maximum
//! as the bridge under test, that acks every QoS 1 message as soon as it arrives (rumqttc's
//! automatic acks) and only counts it. Prints `subscribed` once every connection has its SUBACK,
//! then one JSON [`Summary`] line when all messages arrived or the stream stalled.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};

use crate::tally::{StallClock, Tally};
use crate::{payload, publisher};

#[derive(clap::Args, Debug, Clone)]
pub struct CeilingArgs {
    #[arg(long)]
    pub port: u16,
    /// The filter under `$share/{group}/`.
    #[arg(long)]
    pub filter: String,
    #[arg(long)]
    pub group: String,
    #[arg(long, default_value_t = 2)]
    pub consumers: u32,
    #[arg(long, default_value_t = 256)]
    pub receive_maximum: u16,
    #[arg(long)]
    pub count: u64,
    /// Gives up after this long without a new message.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub stall: Duration,
}

pub async fn run(a: CeilingArgs) -> anyhow::Result<()> {
    let tally = Arc::new(Mutex::new(Tally::new(a.count, 1)));
    let (subscribed_tx, mut subscribed) = tokio::sync::mpsc::unbounded_channel();
    let mut clients = Vec::new();
    for n in 0..a.consumers {
        let mut o = publisher::options(format!("{}-ceiling-{n}", a.group), a.port);
        o.set_receive_maximum(Some(a.receive_maximum));
        let (client, mut eventloop) = AsyncClient::new(o, 64);
        let filter = format!("$share/{}/{}", a.group, a.filter);
        client.subscribe(filter, QoS::AtLeastOnce).await?;
        let (tally, subscribed_tx) = (tally.clone(), subscribed_tx.clone());
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        tally.lock().unwrap().record(&p.payload, payload::now_ns());
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("ceiling connection {n}: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        clients.push(client);
    }
    for _ in 0..a.consumers {
        subscribed.recv().await;
    }
    println!("subscribed");
    let mut clock = StallClock::new(a.stall);
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let t = tally.lock().unwrap();
        if t.complete() || clock.stalled(t.unique()) {
            break;
        }
    }
    let summary = std::mem::replace(&mut *tally.lock().unwrap(), Tally::new(0, 1)).summary();
    println!("{}", serde_json::to_string(&summary)?);
    // Stay connected (and acking) until the benchmark has read this process's CPU and memory
    // and kills it.
    std::future::pending::<()>().await;
    Ok(())
}
