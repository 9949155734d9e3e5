//! A device on the MQTT broker, as downlinks reach it: an MQTT v5 client with a persistent
//! session that subscribes at QoS 1, records every PUBLISH with its properties, and reconnects
//! when the broker goes away (the broker keeps its session and queued messages meanwhile).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: Bytes,
    pub retain: bool,
    pub properties: PublishProperties,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    /// The first user property `name`.
    pub fn user(&self, name: &str) -> Option<&str> {
        self.properties
            .user_properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct Device {
    pub received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Device {
    /// Connects, subscribes to `filter` and waits for the SUBACK.
    pub async fn connect(port: u16, filter: &str) -> Self {
        let mut opts = MqttOptions::new(super::unique("device"), "127.0.0.1", port);
        opts.set_clean_start(false);
        opts.set_session_expiry_interval(Some(600));
        opts.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let mut subscribed_tx = Some(subscribed_tx);
        let sink = received.clone();
        let task = tokio::spawn(async move {
            // Kept alive: the client's requests channel closes with it.
            let _client = client;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(s) = subscribed_tx.take() {
                            let _ = s.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        sink.lock().unwrap().push(Received {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: p.payload,
                            retain: p.retain,
                            properties: p.properties.unwrap_or_default(),
                        });
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed)
            .await
            .expect("the device's subscription was acknowledged")
            .unwrap();
        Device { received, task }
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    pub fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `done` holds for what arrived, up to `limit`; what arrived either way.
    pub async fn wait(&self, limit: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let start = std::time::Instant::now();
        loop {
            let all = self.all();
            if done(&all) || start.elapsed() > limit {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}
