//! A real MQTT v5 publisher (rumqttc) that waits for the broker's PUBACK of every message.

use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

pub struct Publisher {
    client: AsyncClient,
    /// PUBACKs received, and how many said the broker had no subscriber for the message.
    acked: tokio::sync::watch::Receiver<(usize, usize)>,
    sent: usize,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    pub async fn connect(port: u16) -> Self {
        let mut opts = MqttOptions::new(super::unique("pub"), "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_max_packet_size(Some(4 * 1024 * 1024));
        let (client, mut eventloop) = AsyncClient::new(opts, 1024);
        let (tx, acked) = tokio::sync::watch::channel((0usize, 0usize));
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(ack))) => tx.send_modify(|(n, none)| {
                        *n += 1;
                        if ack.reason == PubAckReason::NoMatchingSubscribers {
                            *none += 1;
                        }
                    }),
                    Ok(_) => {}
                    Err(e) => panic!("test publisher lost its connection: {e}"),
                }
            }
        });
        Publisher {
            client,
            acked,
            sent: 0,
            task,
        }
    }

    pub async fn publish(
        &mut self,
        topic: &str,
        payload: impl Into<Bytes>,
        props: PublishProperties,
    ) {
        self.client
            .publish_with_properties(topic, QoS::AtLeastOnce, false, payload.into(), props)
            .await
            .unwrap();
        self.sent += 1;
    }

    /// Publishes `n` plain messages `prefix-{i}` for i in `range`, to `topic(i)`.
    pub async fn publish_numbered(
        &mut self,
        range: std::ops::Range<usize>,
        topic: impl Fn(usize) -> String,
    ) {
        for i in range {
            self.publish(&topic(i), format!("msg-{i}"), PublishProperties::default())
                .await;
        }
    }

    /// Publishes `msg-{i}` for `range` to `topic(i)`, `per_tick` every 100 ms, as devices
    /// would rather than all at once, then waits up to 60 s until the broker acknowledged them.
    pub async fn publish_spread(
        &mut self,
        range: std::ops::Range<usize>,
        topic: impl Fn(usize) -> String,
        per_tick: usize,
    ) {
        let mut at = range.start;
        while at < range.end {
            let end = (at + per_tick).min(range.end);
            self.publish_numbered(at..end, &topic).await;
            at = end;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.wait_acked(Duration::from_secs(60)).await;
    }

    /// Publishes each (topic, payload), plain and in order, then waits up to `limit` until the
    /// broker acknowledged everything published so far.
    pub async fn publish_all(
        &mut self,
        messages: impl IntoIterator<Item = (String, String)>,
        limit: Duration,
    ) {
        for (topic, payload) in messages {
            self.publish(&topic, payload, PublishProperties::default())
                .await;
        }
        self.wait_acked(limit).await;
    }

    /// The same for `payloads`, the `i`th to `topic(i)`.
    pub async fn publish_payloads(
        &mut self,
        topic: impl Fn(usize) -> String,
        payloads: &[String],
        limit: Duration,
    ) {
        let messages = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| (topic(i), p.clone()));
        self.publish_all(messages, limit).await;
    }

    /// Waits until the broker acknowledged everything published so far.
    pub async fn wait_acked(&mut self, limit: Duration) {
        let sent = self.sent;
        let done = tokio::time::timeout(limit, self.acked.wait_for(|a| a.0 >= sent))
            .await
            .is_ok();
        assert!(
            done,
            "broker acknowledged {} of {sent} publishes",
            self.acked.borrow().0
        );
    }

    /// Publishes one message and waits for its PUBACK; false when the broker answered that no
    /// subscriber matched (it dropped the message, and said so).
    pub async fn publish_confirmed(&mut self, topic: &str, payload: impl Into<Bytes>) -> bool {
        let before = self.acked.borrow().1;
        self.publish(topic, payload, PublishProperties::default())
            .await;
        self.wait_acked(Duration::from_secs(10)).await;
        self.acked.borrow().1 == before
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A real MQTT v5 subscriber collecting the payloads it receives.
pub struct Subscriber {
    pub messages: tokio::sync::mpsc::UnboundedReceiver<(String, Bytes)>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    pub async fn connect(port: u16, filter: &str) -> Self {
        let opts = MqttOptions::new(super::unique("sub"), "127.0.0.1", port);
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        let (tx, messages) = tokio::sync::mpsc::unbounded_channel();
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let mut subscribed_tx = Some(subscribed_tx);
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(s) = subscribed_tx.take() {
                            let _ = s.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let topic = String::from_utf8_lossy(&p.topic).into_owned();
                        let _ = tx.send((topic, p.payload));
                    }
                    Ok(_) => {}
                    Err(e) => panic!("test subscriber lost its connection: {e}"),
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(5), subscribed)
            .await
            .unwrap()
            .unwrap();
        Subscriber { messages, task }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}
