//! Every record of a Kafka topic, read once from the start of each partition without joining a
//! group or committing anything: what `mqbridge replay` reads a dead-letter topic with. The read
//! ends once no record came for `idle` (a topic's end is not asked of the broker: tansu, the
//! tests' broker, reports it wrong for batches of several records).

use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message as _};
use rdkafka::{Offset, TopicPartitionList};

use super::config::KafkaConnectionConfig;
use super::connection::PRODUCER_ONLY;
use crate::flow::BoxError;

/// A record read: its partition and offset, headers and value.
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
}

/// Every record of `topic` on the cluster `c` names, in each partition's order.
pub fn read_all(
    c: &KafkaConnectionConfig,
    topic: &str,
    idle: Duration,
) -> Result<Vec<Record>, BoxError> {
    let mut cfg = rdkafka::config::ClientConfig::new();
    for (key, value) in &c.librdkafka {
        if !PRODUCER_ONLY.contains(&key.as_str()) {
            cfg.set(key, value.expose());
        }
    }
    cfg.set("bootstrap.servers", &c.bootstrap_servers);
    cfg.set(
        "group.id",
        format!("mqbridge-replay-{}", uuid::Uuid::now_v7()),
    );
    cfg.set("enable.auto.commit", "false");
    cfg.set("enable.partition.eof", "false");
    let consumer: BaseConsumer = cfg.create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("topic \"{topic}\" has no partitions"))?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut out = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < idle {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last = Instant::now();
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                let value =
                                    h.value.map(String::from_utf8_lossy).unwrap_or_default();
                                (h.key.to_owned(), value.into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    headers,
                    payload: Bytes::copy_from_slice(m.payload().unwrap_or_default()),
                });
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    Ok(out)
}
