//! MQTT → RocketMQ against rocketmq-rust's real name server and broker: the topic, tag and keys
//! templates and the properties; messages RocketMQ could never take dead-lettered; a charging
//! pile's last will reaching RocketMQ; a broker outage mid-stream losing nothing; per-topic
//! order on an ordered route.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{LastWill, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, MqttOptions};

use common::config::{Config, Connection, Route};
use common::function::{await_dead_letters, dead_letters};
use common::mqtt::Publisher;
use common::rocketmq::{body, property, tag_and_keys, Client, RocketmqUnderTest};
use common::{free_port, mosquitto, unique, Bridge, Proxy};

fn config(mqtt_port: u16, namesrv: &str, routes: impl IntoIterator<Item = Route>) -> String {
    let rmq = Connection::rocketmq(namesrv)
        .set("producer_group", unique("bridge").replace('.', "_"))
        .set("send_timeout", "2s");
    let config = Config::new(mqtt_port, "rmq")
        .admin(free_port())
        .connection("rmq", rmq);
    routes
        .into_iter()
        .fold(config, Config::route)
        .dead_letter("dead.jsonl")
        .text()
}

/// A route to the connection `rmq`.
fn route(name: &str, filter: &str) -> Route {
    Route::new(name, filter, "rmq")
}

/// Mosquitto, a RocketMQ name server and broker, a topic with 4 queues, a bridge with one
/// route to it (its keys set by `keys(route, topic)`), and a publisher.
struct Setup {
    _broker: common::Server,
    rq: RocketmqUnderTest,
    client: Client,
    topic: String,
    bridge: Bridge,
    publisher: Publisher,
}

impl Setup {
    async fn start(
        prefix: &str,
        name: &str,
        filter: &str,
        keys: impl Fn(Route, &str) -> Route,
    ) -> Self {
        let broker = mosquitto();
        let rq = RocketmqUnderTest::start();
        let client = Client::new();
        let topic = topic_name(prefix);
        client.create_topic(&rq.namesrv(), &topic, 4).await;
        let routes = [keys(route(name, filter), &topic)];
        let bridge = Bridge::start(&config(broker.port, &rq.namesrv(), routes));
        bridge.wait_subscribed(0, 1);
        let publisher = Publisher::connect(broker.port).await;
        Setup {
            _broker: broker,
            rq,
            client,
            topic,
            bridge,
            publisher,
        }
    }
}

fn topic_name(prefix: &str) -> String {
    unique(prefix).replace(['.', '/'], "_")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_rocketmq_with_topic_tag_keys_and_properties() {
    let broker = mosquitto();
    let rq = RocketmqUnderTest::start();
    let client = Client::new();
    let suffix = topic_name("st");
    let topic = format!("chargers-{suffix}");
    client.create_topic(&rq.namesrv(), &topic, 4).await;
    let routes = [
        route("status", "chargers/+/status")
            .set("topic", format!("chargers-{suffix}"))
            .set("tag", "{topic.2}"),
        route("raw", "raw/#").set("topic", "raw-{topic.2}"),
    ];
    let bridge = Bridge::start(&config(broker.port, &rq.namesrv(), routes));
    bridge.wait_subscribed(0, 2);
    let mut publisher = Publisher::connect(broker.port).await;
    let props = PublishProperties {
        content_type: Some("application/json".into()),
        user_properties: vec![
            ("site".into(), "north".into()),
            ("fw".into(), "1".into()),
            ("fw".into(), "2".into()),
        ],
        ..Default::default()
    };
    for i in 0..50 {
        publisher
            .publish(
                &format!("chargers/P-{}/status", i % 5),
                format!("s-{i}"),
                props.clone(),
            )
            .await;
    }
    // Never takeable: an invalid topic name ('.'), an empty body.
    publisher
        .publish("raw/a.b", "bad-topic", PublishProperties::default())
        .await;
    publisher
        .publish("chargers/P-0/status", "", PublishProperties::default())
        .await;
    publisher.wait_acked(Duration::from_secs(20)).await;

    let got = client
        .read(&rq.namesrv(), &topic, Duration::from_secs(60), |m| {
            m.len() >= 50
        })
        .await;
    let bodies: HashSet<String> = got.iter().map(body).collect();
    assert_eq!(
        bodies.len(),
        50,
        "{:?}\n{}",
        bodies,
        rq.logs().chars().take(3000).collect::<String>()
    );
    for m in &got {
        let b = body(m);
        let n: usize = b.trim_start_matches("s-").parse().unwrap();
        let (tag, keys) = tag_and_keys(m);
        assert_eq!(tag.as_deref(), Some(format!("P-{}", n % 5).as_str()));
        let id = property(m, "mqtt_message_id").unwrap();
        assert_eq!(keys.as_deref(), Some(id.as_str()));
        assert_eq!(
            property(m, "mqtt_topic").unwrap(),
            format!("chargers/P-{}/status", n % 5)
        );
        assert_eq!(property(m, "mqtt_qos").as_deref(), Some("1"));
        assert_eq!(
            property(m, "mqtt_content_type").as_deref(),
            Some("application/json")
        );
        assert_eq!(property(m, "site").as_deref(), Some("north"));
        assert_eq!(property(m, "fw").as_deref(), Some(r#"["1","2"]"#));
    }
    let dead = bridge.dir.join("dead.jsonl");
    let entries = await_dead_letters(&dead, 2, Duration::from_secs(10)).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    let kinds: HashMap<String, String> = entries
        .iter()
        .map(|e| {
            (
                e["message"]["payload"].as_str().unwrap().to_owned(),
                e["error_kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        kinds.get("bad-topic").map(String::as_str),
        Some("invalid_topic")
    );
    assert_eq!(kinds.get("").map(String::as_str), Some("empty_body"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_will_reaches_rocketmq() {
    let broker = mosquitto();
    let rq = RocketmqUnderTest::start();
    let client = Client::new();
    let topic = topic_name("wills");
    client.create_topic(&rq.namesrv(), &topic, 4).await;
    let routes = [route("wills", "chargers/+/status")
        .set("topic", topic.as_str())
        .set("tag", "{topic.2}")];
    let bridge = Bridge::start(&config(broker.port, &rq.namesrv(), routes));
    bridge.wait_subscribed(0, 1);

    // A pile connects through a proxy with its last will, then loses its connection.
    let proxy = Proxy::start(broker.port);
    let mut options = MqttOptions::new("pile-P-17", "127.0.0.1", proxy.port);
    options.set_keep_alive(Duration::from_secs(5));
    options.set_last_will(LastWill::new(
        "chargers/P-17/status",
        "offline",
        QoS::AtLeastOnce,
        false,
        None,
    ));
    let (_pile, mut events) = AsyncClient::new(options, 10);
    let connected = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::ConnAck(
                _,
            ))) = events.poll().await
            {
                break;
            }
        }
    })
    .await;
    assert!(connected.is_ok());
    let pile = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    proxy.cut();

    let got = client
        .read(&rq.namesrv(), &topic, Duration::from_secs(60), |m| {
            !m.is_empty()
        })
        .await;
    pile.abort();
    assert_eq!(got.len(), 1, "{}", bridge.log_text());
    let will = &got[0];
    assert_eq!(body(will), "offline");
    assert_eq!(tag_and_keys(will).0.as_deref(), Some("P-17"));
    assert_eq!(
        property(will, "mqtt_topic").as_deref(),
        Some("chargers/P-17/status")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocketmq_outage_loses_nothing() {
    let Setup {
        rq,
        client,
        topic,
        bridge,
        mut publisher,
        _broker,
    } = Setup::start("outage", "numbers", "numbers/#", |route, topic| {
        route.set("topic", topic).set("batch_size", 50)
    })
    .await;
    let n = 600;
    for i in 0..n / 2 {
        publisher
            .publish(
                &format!("numbers/{}", i % 7),
                format!("n-{i}"),
                PublishProperties::default(),
            )
            .await;
    }
    // The broker stops answering (SIGSTOP) for 6 s mid-stream.
    common::bridge::send_signal(rq.broker_pid(), "STOP");
    for i in n / 2..n {
        publisher
            .publish(
                &format!("numbers/{}", i % 7),
                format!("n-{i}"),
                PublishProperties::default(),
            )
            .await;
    }
    publisher.wait_acked(Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    common::bridge::send_signal(rq.broker_pid(), "CONT");

    let got = client
        .read(&rq.namesrv(), &topic, Duration::from_secs(90), |m| {
            m.iter().map(body).collect::<HashSet<_>>().len() >= n
        })
        .await;
    let bodies: HashSet<String> = got.iter().map(body).collect();
    let missing: Vec<usize> = (0..n)
        .filter(|i| !bodies.contains(&format!("n-{i}")))
        .collect();
    assert!(
        missing.is_empty(),
        "missing {missing:?}\n{}",
        bridge.log_text()
    );
    assert!(dead_letters(&bridge.dir.join("dead.jsonl")).is_empty());
    assert!(
        bridge.log_text().contains("retrying"),
        "the outage was not seen"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_routes_keep_each_topics_order_in_one_queue() {
    let Setup {
        rq,
        client,
        topic,
        bridge,
        mut publisher,
        _broker,
    } = Setup::start("ordered", "ordered", "ord/#", |route, topic| {
        route
            .set("topic", topic)
            .set("ordered", true)
            .set("batch_size", 20)
    })
    .await;
    let (topics, per) = (8, 40);
    for n in 0..per {
        for t in 0..topics {
            publisher
                .publish(
                    &format!("ord/{t}"),
                    format!("t{t}-{n}"),
                    PublishProperties::default(),
                )
                .await;
        }
    }
    publisher.wait_acked(Duration::from_secs(20)).await;
    let got = client
        .read(&rq.namesrv(), &topic, Duration::from_secs(60), |m| {
            m.len() >= topics * per
        })
        .await;
    assert_eq!(got.len(), topics * per);
    let mut queue_of: HashMap<String, i32> = HashMap::new();
    let mut by_queue: HashMap<i32, Vec<&rocketmq_model::common::message::message_ext::MessageExt>> =
        HashMap::new();
    for m in &got {
        by_queue.entry(m.queue_id()).or_default().push(m);
    }
    for (queue, mut messages) in by_queue {
        messages.sort_by_key(|m| m.queue_offset());
        let mut next: HashMap<String, usize> = HashMap::new();
        for m in messages {
            let b = body(m);
            let (t, n) = b.split_once('-').unwrap();
            assert_eq!(
                *queue_of.entry(t.to_owned()).or_insert(queue),
                queue,
                "{t} in two queues"
            );
            let want = next.entry(t.to_owned()).or_insert(0);
            assert_eq!(n.parse::<usize>().unwrap(), *want, "{t} out of order");
            *want += 1;
        }
    }
    let _ = bridge;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_split_at_the_size_limit_and_a_message_too_large_is_dead_lettered() {
    let Setup {
        rq,
        client,
        topic,
        bridge,
        mut publisher,
        _broker,
    } = Setup::start("big", "big", "big/#", |route, topic| {
        route
            .set("topic", topic)
            .set("batch_size", 20)
            .set("max_wait", "1s")
    })
    .await;
    // 12 × 700 KiB: more than two of the broker's 4 MiB batches.
    for i in 0..12 {
        let payload = format!("b-{i:02}-{}", "x".repeat(700 * 1024));
        publisher
            .publish("big/1", payload, PublishProperties::default())
            .await;
    }
    // Within MQTT's limits, but over RocketMQ's 4 MiB once its properties are counted.
    let huge = format!("huge-{}", "y".repeat(4 * 1024 * 1024 - 200));
    publisher
        .publish("big/1", huge, PublishProperties::default())
        .await;
    publisher.wait_acked(Duration::from_secs(30)).await;
    let got = client
        .read(&rq.namesrv(), &topic, Duration::from_secs(60), |m| {
            m.len() >= 12
        })
        .await;
    let mut heads: Vec<String> = got.iter().map(|m| body(m)[..4].to_owned()).collect();
    heads.sort();
    let expected: Vec<String> = (0..12).map(|i| format!("b-{i:02}")).collect();
    assert_eq!(heads, expected, "{}", bridge.log_text());
    let dead = bridge.dir.join("dead.jsonl");
    let entries = await_dead_letters(&dead, 1, Duration::from_secs(10)).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry["error_kind"], "too_large");
    assert!(entry["message"]["payload"]
        .as_str()
        .unwrap()
        .starts_with("huge-"));
}
