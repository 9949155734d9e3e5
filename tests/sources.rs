//! Routes that read Kafka or RocketMQ instead of the MQTT broker, against real servers: Kafka
//! records to an HTTP function (the CKafka-trigger case: in partition order, offsets committed
//! only after the function's 2xx, the bridge killed mid-stream losing nothing) and RocketMQ
//! messages into Kafka.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use common::config::{Config, Connection, Route};
use common::function::{FunctionServer, Reply};
use common::kafka::{all_arrived, create_topic, produce, producer, read_all};
use common::rocketmq::{send, Client, RocketmqUnderTest};
use common::{eventually, free_port, mosquitto, unique, Bridge, KafkaUnderTest};

fn topic_name(prefix: &str) -> String {
    unique(prefix).replace(['.', '/'], "_")
}

/// The offsets `group` committed on `topic`'s partitions (-1: none yet).
fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    got.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => -1,
        })
        .collect()
}

/// The records the function took (answered 2xx), in the order it took them: the number `i`
/// of their `n-{i}` body, and the record.
fn taken_records(function: &FunctionServer) -> Vec<(usize, serde_json::Value)> {
    let calls = function.calls();
    let ok = calls.iter().filter(|c| c.status / 100 == 2);
    ok.flat_map(|c| c.kafka_records().into_iter().cloned().collect::<Vec<_>>())
        .filter_map(|r| {
            let n = r["msgBody"].as_str()?.strip_prefix("n-")?.parse().ok()?;
            Some((n, r))
        })
        .collect()
}

/// The `n-{i}` numbers the function took, in the order it took them.
fn taken(function: &FunctionServer) -> Vec<usize> {
    taken_records(function)
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_records_reach_a_function_in_order_committed_after_its_2xx_and_a_kill_loses_nothing()
{
    let broker = mosquitto();
    let kafka = KafkaUnderTest::start().await;
    let topic = topic_name("orders");
    create_topic(&kafka.bootstrap(), &topic, 2).await;
    let failing = Arc::new(AtomicBool::new(true));
    let function = FunctionServer::start({
        let failing = failing.clone();
        move |_| match failing.load(Ordering::SeqCst) {
            true => Reply::status(503),
            false => Reply::ok(),
        }
    })
    .await;
    let admin = free_port();
    let config = Config::new(broker.port, "src")
        .admin(admin)
        .dead_letter("dead.jsonl")
        // After the kill, the group waits this long for the killed member before the
        // restarted one gets the partitions (librdkafka's default is 45 s).
        .connection(
            "ck",
            Connection::kafka(&kafka.bootstrap()).librdkafka("session.timeout.ms", "6000"),
        )
        .connection("fn", Connection::http(&function.url()))
        .route(
            Route::reading("orders", "ck", &topic, "fn")
                .set("ordered", true)
                .set("batch_size", 20),
        );
    let mut bridge = Bridge::start(&config.text());
    let producer = producer(&kafka.bootstrap());
    // Four keys over two partitions: `n-{i}` has key `k-{i % 4}`. Where each landed.
    let key = |i: usize| format!("k-{}", i % 4);
    let produced = Arc::new(Mutex::new(HashMap::new()));
    for i in 0..40 {
        let at = produce(&producer, &topic, Some(&key(i)), &[], &format!("n-{i}")).await;
        produced.lock().unwrap().insert(i, at);
    }
    // The function fails: the records are retried, and nothing is committed.
    let retried = eventually(Duration::from_secs(60), || function.calls().len() >= 4).await;
    assert!(
        retried,
        "{} calls; log:\n{}",
        function.calls().len(),
        bridge.log_text()
    );
    let bootstrap = kafka.bootstrap();
    assert_eq!(
        committed(&bootstrap, "mqbridge-orders", &topic, 2),
        [-1, -1]
    );
    // The lag gauge shows the group behind by every record.
    let lag = "mqbridge_source_lag_messages";
    let behind = bridge
        .wait_metric(admin, lag, 40.0, Duration::from_secs(30))
        .await;
    assert!(behind, "lag {}", bridge.metric(admin, lag).await);
    assert_eq!(bridge.metric(admin, lag).await, 40.0);
    failing.store(false, Ordering::SeqCst);
    let delivered = eventually(Duration::from_secs(60), || taken(&function).len() >= 40).await;
    assert!(delivered, "{:?}", taken(&function));
    // Once each, and the offsets committed past all of them.
    let mut first = taken(&function);
    first.sort();
    assert_eq!(first, (0..40).collect::<Vec<_>>());
    let all_committed = eventually(Duration::from_secs(30), || {
        let offsets = committed(&bootstrap, "mqbridge-orders", &topic, 2);
        offsets.iter().map(|o| o.max(&0)).sum::<i64>() == 40
    })
    .await;
    assert!(
        all_committed,
        "{:?}",
        committed(&bootstrap, "mqbridge-orders", &topic, 2)
    );
    let start = std::time::Instant::now();
    while bridge.metric(admin, lag).await > 0.0 && start.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(bridge.metric(admin, lag).await, 0.0, "caught up");

    // Killed mid-stream: it goes on from its committed offsets, losing nothing.
    let n = 400;
    let writer = {
        let (producer, topic) = (producer.clone(), topic.clone());
        let produced = produced.clone();
        tokio::spawn(async move {
            for i in 40..n {
                let at = produce(&producer, &topic, Some(&key(i)), &[], &format!("n-{i}")).await;
                produced.lock().unwrap().insert(i, at);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let midway = eventually(Duration::from_secs(60), || taken(&function).len() >= 150).await;
    assert!(midway, "{} taken", taken(&function).len());
    bridge.kill();
    bridge.spawn();
    writer.await.unwrap();
    let all = eventually(Duration::from_secs(90), || {
        let got: std::collections::HashSet<usize> = taken(&function).into_iter().collect();
        got.len() >= n
    })
    .await;
    let got = taken(&function);
    let mut copies: HashMap<usize, usize> = HashMap::new();
    got.iter().for_each(|i| *copies.entry(*i).or_default() += 1);
    let missing: Vec<usize> = (0..n).filter(|i| !copies.contains_key(i)).collect();
    assert!(
        all && missing.is_empty(),
        "missing {missing:?}; log:\n{}",
        bridge.log_text()
    );
    // What was committed before the kill is not delivered again.
    let again: Vec<usize> = (0..40).filter(|i| copies[i] > 1).collect();
    assert!(again.is_empty(), "delivered again: {again:?}");
    // Each key's records in order: the next of its key, or (once, at the restart) back to
    // the first one not committed.
    for k in 0..4 {
        let of_key: Vec<usize> = got.iter().copied().filter(|i| i % 4 == k).collect();
        let rewinds = of_key.windows(2).filter(|w| w[1] <= w[0]).count();
        let skips = of_key.windows(2).filter(|w| w[1] > w[0] + 4).count();
        assert!(rewinds <= 1 && skips == 0, "key k-{k}: {of_key:?}");
    }
    // Each came as the CKafka trigger gives it, from where it was produced.
    let produced = produced.lock().unwrap();
    for (i, record) in taken_records(&function) {
        let (partition, offset) = produced[&i];
        let expected = serde_json::json!({
            "topic": topic, "partition": partition, "offset": offset, "msgKey": key(i),
            "msgBody": format!("n-{i}"), "msgBodyEncoding": "utf8",
        });
        assert_eq!(record, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocketmq_messages_reach_kafka_with_their_properties() {
    let broker = mosquitto();
    let rq = RocketmqUnderTest::start();
    let client = Client::new();
    let source = topic_name("piles");
    client.create_topic(&rq.namesrv(), &source, 2).await;
    let kafka = KafkaUnderTest::start().await;
    let target = topic_name("faults");
    create_topic(&kafka.bootstrap(), &target, 1).await;
    let admin = free_port();
    let config = Config::new(broker.port, "src")
        .admin(admin)
        .dead_letter("dead.jsonl")
        .connection("rmq", Connection::rocketmq(&rq.namesrv()))
        .connection("kafka", Connection::kafka(&kafka.bootstrap()))
        .route(Route::reading("faults", "rmq", &source, "kafka").set("topic", target.as_str()));
    let bridge = Bridge::start(&config.text());
    let producer = client.producer(&rq.namesrv()).await;
    let n = 100;
    for i in 0..n {
        let props = [("site", "north")];
        send(
            &producer,
            &source,
            "fault",
            &format!("P-{}", i % 5),
            &props,
            &format!("msg-{i}"),
        )
        .await;
    }
    let duplicates = all_arrived(&kafka.bootstrap(), &target, 1, n, || bridge.log_text());
    assert_eq!(duplicates, 0);
    let records = read_all(
        &kafka.bootstrap(),
        &target,
        1,
        Duration::from_secs(10),
        |r| r.len() >= n,
    );
    let headers = common::kafka::headers(&records[0]);
    assert!(
        headers.contains(&("site".to_owned(), "north".to_owned())),
        "{headers:?}"
    );
    // `/routes` shows what the route reads, and its group member as its consumer.
    let overview: serde_json::Value =
        serde_json::from_str(&common::bridge::http_get(admin, "/routes").await).unwrap();
    let route = &overview["routes"][0];
    assert_eq!(route["source"]["topic"], source.as_str(), "{route}");
    assert_eq!(route["state"], "running", "{route}");
    assert_eq!(
        route["consumers"][0]["client_id"], "mqbridge-faults",
        "{route}"
    );
    // The flow's direction and kinds, for splitting its metrics.
    let metrics = common::bridge::http_get(admin, "/metrics").await;
    let info = metrics
        .lines()
        .find(|l| l.starts_with("mqbridge_flow_info{") && l.contains(r#"route="faults""#))
        .unwrap_or_else(|| panic!("no flow info: {metrics}"));
    for label in [
        r#"direction="across""#,
        r#"source="rocketmq""#,
        r#"sink="kafka""#,
    ] {
        assert!(info.contains(label) && info.ends_with(" 1"), "{info}");
    }
    // Each queue it read (`broker:queue`) shows a lag, down to 0 once everything is committed.
    let lags = |metrics: &str| -> Vec<String> {
        let prefix = "mqbridge_source_lag_messages{";
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix) && l.contains(r#"route="faults""#))
            .map(str::to_owned)
            .collect()
    };
    let start = std::time::Instant::now();
    let mut now = lags(&metrics);
    let queue = r#"partition="broker-a:"#;
    while !(now.len() == 2 && now.iter().all(|l| l.contains(queue) && l.ends_with(" 0"))) {
        assert!(start.elapsed() < Duration::from_secs(30), "lag: {now:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        now = lags(&common::bridge::http_get(admin, "/metrics").await);
    }
}
