//! RocketMQ as a source: rocketmq-client-rust's lite pull consumer (not the push consumer,
//! whose listener is a blocking callback) in the route's group, subscribed to its topic and tag
//! filter, with automatic commits off: offsets are committed once the pipeline has delivered
//! (or dead-lettered) everything before them, and sent to the broker at most once a second and
//! when the consumer stops. While paused the source does not poll; the client stops fetching
//! once its per-queue cache is full.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rocketmq_client_rust::{ClientRuntime, DefaultLitePullConsumer};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::MessageTrait;
use rocketmq_model::common::message::STRING_HASH_SET;
use rocketmq_runtime::RuntimeOwner;

use super::config::RocketmqSourceConfig;
use super::properties::ROCKETMQ;
use super::{acl_hook, client_runtime, describe, RocketmqConnectionConfig};
use crate::flow::BoxError;
use crate::message::{Message, Origin, Partition};
use crate::sources::lag::Ends;
use crate::sources::{Reader, StartFrom};

const PERSIST_EVERY: Duration = Duration::from_secs(1);

pub struct RocketmqSource {
    consumer: DefaultLitePullConsumer,
    /// When committed offsets were last sent to the broker.
    persisted: Instant,
    /// Offsets committed since.
    unpersisted: HashMap<MessageQueue, i64>,
    runtime: Arc<ClientRuntime>,
    // Dropped last: the runtime the client's tasks run on.
    _owner: RuntimeOwner,
}

impl RocketmqSource {
    pub async fn start(
        c: &RocketmqConnectionConfig,
        d: &RocketmqSourceConfig,
        name: &str,
    ) -> Result<Self, BoxError> {
        let (owner, runtime) = client_runtime(format!("rocketmq-{name}"))?;
        let mut builder = DefaultLitePullConsumer::builder(runtime.clone())
            .consumer_group(d.group())
            .name_server_addr(c.namesrv.join(";").as_str())
            .consume_from_where(match d.start {
                StartFrom::Latest => ConsumeFromWhere::ConsumeFromLastOffset,
                StartFrom::Earliest => ConsumeFromWhere::ConsumeFromFirstOffset,
            })
            .auto_commit(false)
            .pull_batch_size(32);
        if let Some(hook) = acl_hook(c)? {
            builder = builder.rpc_hook(hook);
        }
        let consumer = builder.build().map_err(|e| describe(&e))?;
        consumer.start().await.map_err(|e| describe(&e))?;
        consumer
            .subscribe_with_expression(d.topic.as_str(), d.tags.as_str())
            .await
            .map_err(|e| describe(&e))?;
        Ok(RocketmqSource {
            consumer,
            persisted: Instant::now(),
            unpersisted: HashMap::new(),
            runtime,
            _owner: owner,
        })
    }
}

impl RocketmqSource {
    /// Sends the committed offsets to the broker at most once a second (the client does so
    /// when it stops too), which bounds what a crash publishes twice.
    async fn persist_due(&mut self) {
        if self.unpersisted.is_empty() || self.persisted.elapsed() < PERSIST_EVERY {
            return;
        }
        self.persisted = Instant::now();
        let offsets = std::mem::take(&mut self.unpersisted);
        self.consumer.commit_with_map(offsets, true).await;
    }
}

fn owned(m: MessageExt) -> Message {
    let mut headers: Vec<(String, String)> = m
        .properties()
        .iter()
        .filter(|(k, _)| !STRING_HASH_SET.contains(k.as_str()))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    headers.sort();
    let origin = Origin {
        system: &ROCKETMQ,
        partition: Partition {
            topic: m.topic().to_string(),
            broker: m.broker_name().to_owned(),
            id: m.queue_id(),
        },
        offset: m.queue_offset(),
        key: m.get_keys().map(|k| k.to_string()),
        tag: m.tags().map(|t| t.to_string()),
    };
    Message::record(origin, headers, m.body().unwrap_or_default())
}

#[async_trait]
impl Reader for RocketmqSource {
    async fn poll(&mut self, max: usize, wait: Duration) -> Vec<Message> {
        self.persist_due().await;
        let wait = wait.as_millis() as u64;
        let mut out: Vec<Message> = self
            .consumer
            .poll_with_timeout(wait)
            .await
            .into_iter()
            .map(owned)
            .collect();
        while !out.is_empty() && out.len() < max {
            let more = self.consumer.poll_with_timeout(0).await;
            if more.is_empty() {
                break;
            }
            out.extend(more.into_iter().map(owned));
        }
        out
    }

    async fn commit(&mut self, next: &BTreeMap<Partition, i64>) {
        let offsets: HashMap<MessageQueue, i64> = next
            .iter()
            .map(|(p, offset)| {
                let mq = MessageQueue::from_parts(p.topic.as_str(), p.broker.as_str(), p.id);
                (mq, *offset)
            })
            .collect();
        if offsets.is_empty() {
            return;
        }
        self.consumer.commit_with_map(offsets.clone(), false).await;
        self.unpersisted.extend(offsets);
        self.persist_due().await;
    }

    fn ask_ends(&mut self, partitions: &[Partition]) -> Option<Ends> {
        let (consumer, partitions) = (self.consumer.clone(), partitions.to_vec());
        Some(tokio::spawn(async move {
            let mut ends = Vec::new();
            for p in partitions {
                let mq = MessageQueue::from_parts(p.topic.as_str(), p.broker.as_str(), p.id);
                if let Ok(end) = consumer.max_offset(&mq).await {
                    ends.push((p, end));
                }
            }
            ends
        }))
    }

    async fn set_paused(&mut self, _paused: bool) {}

    async fn idle(&mut self, wait: Duration) {
        tokio::time::sleep(wait).await;
    }

    async fn close(self: Box<Self>) {
        self.consumer.shutdown().await;
        let _ = self.runtime.shutdown().await;
        let owner = self._owner;
        // Its threads are joined when dropped: not on the runtime.
        std::thread::spawn(move || drop(owner));
    }
}
