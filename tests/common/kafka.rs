//! Kafka helpers on librdkafka: create topics, read every record of a topic from the start.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    create_topic_with(ClientConfig::new(), bootstrap, name, partitions).await
}

/// The same, with `config`'s settings (TLS) on top.
pub async fn create_topic_with(
    mut config: ClientConfig,
    bootstrap: &str,
    name: &str,
    partitions: i32,
) {
    let admin: AdminClient<DefaultClientContext> =
        config.set("bootstrap.servers", bootstrap).create().unwrap();
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let result = admin
        .create_topics([&topic], &opts)
        .await
        .expect("create_topics");
    for r in result {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

/// Reads `topic` from the beginning of every partition until `stop` says it has enough or
/// `limit` passes.
pub fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    limit: Duration,
    mut stop: impl FnMut(&[OwnedMessage]) -> bool,
) -> Vec<OwnedMessage> {
    let consumer = reader(bootstrap, topic, partitions, ClientConfig::new());
    let start = Instant::now();
    let mut out = Vec::new();
    while start.elapsed() < limit && !stop(&out) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(m.detach()),
            Some(Err(e)) => eprintln!("test reader: {e}"),
            None => {}
        }
    }
    out
}

/// A consumer of every partition of `topic` from its beginning, in a group of its own, with
/// `config`'s settings on top.
pub fn reader(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    mut config: ClientConfig,
) -> BaseConsumer {
    let consumer: BaseConsumer = config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", super::unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    consumer
}

pub fn headers(m: &OwnedMessage) -> Vec<(String, String)> {
    let Some(h) = m.headers() else {
        return Vec::new();
    };
    h.iter()
        .map(|h| {
            (
                h.key.to_owned(),
                String::from_utf8(h.value.unwrap_or_default().to_vec()).unwrap(),
            )
        })
        .collect()
}

pub fn text(m: &OwnedMessage) -> String {
    String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap()
}

/// The message number of a record: its payload up to an optional `|` padding.
pub fn number(record: &OwnedMessage) -> String {
    text(record)
        .split('|')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Reads `topic` until every `msg-{i}` for i < n is there (or two minutes pass), asserts none
/// is missing and returns how many extra copies arrived.
pub fn all_arrived(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    n: usize,
    log: impl Fn() -> String,
) -> usize {
    let mut seen = std::collections::HashSet::new();
    let records = read_all(
        bootstrap,
        topic,
        partitions,
        Duration::from_secs(120),
        |r| {
            if let Some(last) = r.last() {
                seen.insert(number(last));
            }
            seen.len() >= n
        },
    );
    let seen: std::collections::HashSet<String> = records.iter().map(number).collect();
    let missing: Vec<usize> = (0..n)
        .filter(|i| !seen.contains(&format!("msg-{i}")))
        .collect();
    let duplicates = records.len() - seen.len();
    eprintln!(
        "{n} published, {} records in Kafka, {duplicates} duplicates, {} missing",
        records.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "{} messages lost, first {:?}; bridge log:\n{}",
        missing.len(),
        &missing[..missing.len().min(10)],
        log()
    );
    duplicates
}

/// A producer for tests that write what downlinks read.
pub fn producer(bootstrap: &str) -> rdkafka::producer::FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "1")
        .create()
        .unwrap()
}

/// Writes one record and waits for its delivery report.
pub async fn produce(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    payload: &str,
) -> (i32, i64) {
    let mut h = rdkafka::message::OwnedHeaders::new();
    for (k, v) in headers {
        h = h.insert(rdkafka::message::Header {
            key: k,
            value: Some(*v),
        });
    }
    let mut record = rdkafka::producer::FutureRecord::to(topic)
        .payload(payload)
        .headers(h);
    if let Some(key) = key {
        record = record.key(key);
    }
    let delivery = producer
        .send(record, Duration::from_secs(30))
        .await
        .unwrap_or_else(|(e, _)| panic!("producing to {topic}: {e}"));
    (delivery.partition, delivery.offset)
}
