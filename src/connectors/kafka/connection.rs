//! A Kafka connection: one producer shared by every route that names it. The producer is
//! idempotent with `acks=all`, so a delivery report means the record is replicated and a
//! librdkafka retry cannot duplicate or reorder it.
//!
//! An idempotent producer can end up refused for good: librdkafka reports a fatal error, or the
//! broker keeps answering `ProducerFenced` (or another producer-id/epoch error) to every retry.
//! The connection then replaces the producer with a new one, which gets a new producer id; the
//! messages that failed are retried on it.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, Producer};

use super::config::KafkaConnectionConfig;
use crate::events;
use crate::flow::BoxError;

pub struct KafkaConnection {
    slot: Arc<ProducerSlot>,
}

/// The connection's producer, with a context that keeps the client's last error.
pub type KafkaProducer = FutureProducer<LastError>;

/// librdkafka reports what stops it from reaching the cluster (a refused SASL password, a TLS
/// handshake that failed, a broker that cannot be resolved) only to the client's error
/// callback; a request meanwhile just waits. The connection check says why from here.
/// One per connection, shared by the producers that replace one another.
#[derive(Clone, Default)]
pub struct LastError(Arc<Mutex<Option<String>>>);

impl LastError {
    /// Forgets the last report: the cluster answered since.
    pub(super) fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// What the client last reported, if the cluster has not answered since.
    pub(super) fn current(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `error`, with what the client last reported when there is something.
    fn explain(&self, error: KafkaError) -> BoxError {
        let reason = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match reason {
            Some(reason) => format!("{error}: {reason}").into(),
            None => error.into(),
        }
    }
}

impl ClientContext for LastError {
    fn error(&self, error: KafkaError, reason: &str) {
        // "All brokers are down" follows the reason (a refused password) and says less.
        let generic = error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown);
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !generic || last.is_none() {
            *last = Some(reason.to_owned());
        }
        drop(last);
        DefaultClientContext.error(error, reason);
    }
}

/// A consumer keeps its last error the same way (`KafkaSource`).
impl ConsumerContext for LastError {}

/// The connection's current producer and how many times it was replaced.
pub struct ProducerSlot {
    name: String,
    config: ClientConfig,
    errors: LastError,
    current: RwLock<(u64, KafkaProducer)>,
}

impl ProducerSlot {
    pub fn generation(&self) -> u64 {
        self.current.read().unwrap_or_else(|p| p.into_inner()).0
    }

    /// The producer to use now, with its generation.
    pub fn get(&self) -> (u64, KafkaProducer) {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        (current.0, current.1.clone())
    }

    /// Replaces generation `generation` when librdkafka reports it failed fatally, or when a
    /// delivery failed in a way only a new producer mends (`broken`); once, however many routes
    /// notice it.
    pub fn replace_if_broken(&self, generation: u64, broken: bool) {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if current.0 != generation {
            return;
        }
        let reason = match current.1.client().fatal_error() {
            Some((_, reason)) => reason,
            None if broken => "the broker no longer accepts its producer id or epoch".to_owned(),
            None => return,
        };
        match self.config.create_with_context(self.errors.clone()) {
            Ok(fresh) => {
                let old = std::mem::replace(&mut *current, (generation + 1, fresh));
                events::ProducerReplaced {
                    connection: &self.name,
                    reason: &reason,
                }
                .emit();
                // Dropping purges and joins the old producer's thread: not on the runtime.
                tokio::task::spawn_blocking(move || drop(old));
            }
            Err(e) => {
                let error = format!(
                    "{reason}; a new producer failed too: {}",
                    ConfigRefused::from(e)
                );
                events::ConnectionUnhealthy {
                    connection: &self.name,
                    error: &error,
                }
                .emit();
            }
        }
    }
}

/// The librdkafka configuration for a connection (also used by the config check to try the
/// pass-through settings without starting a client).
pub fn client_config(c: &KafkaConnectionConfig) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("client.id", "mqbridge");
    cfg.set("linger.ms", "5");
    cfg.set("log.connection.close", "false");
    for (key, value) in &c.librdkafka {
        if !CONSUMER_ONLY.contains(&key.as_str()) {
            cfg.set(key, value.expose());
        }
    }
    cfg.set("bootstrap.servers", &c.bootstrap_servers);
    cfg.set("compression.type", c.compression.as_str());
    cfg.set("enable.idempotence", "true");
    cfg.set("acks", "all");
    cfg.set(
        "message.timeout.ms",
        c.delivery_timeout.as_millis().to_string(),
    );
    cfg
}

/// Producer settings the connection may carry that its readers (`KafkaSource`) do not take.
pub(super) const PRODUCER_ONLY: &[&str] = &[
    "acks",
    "compression.type",
    "compression.codec",
    "enable.idempotence",
    "linger.ms",
    "queue.buffering.max.ms",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "batch.size",
    "batch.num.messages",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "retries",
    "message.send.max.retries",
    "request.required.acks",
    "max.in.flight.requests.per.connection",
    "max.in.flight",
    "transactional.id",
];

/// Consumer settings the connection may carry for its sources (`KafkaSource`), which the
/// producer does not take: librdkafka would warn that it ignores each.
const CONSUMER_ONLY: &[&str] = &[
    "group.id",
    "group.instance.id",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "auto.offset.reset",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "fetch.wait.max.ms",
    "fetch.min.bytes",
    "fetch.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.queue.backoff.ms",
    "fetch.error.backoff.ms",
    "partition.assignment.strategy",
    "isolation.level",
    "check.crcs",
];

/// librdkafka refused a setting or could not create a client. Says which setting and why,
/// never the value, which may be a secret.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigRefused(String);

impl From<KafkaError> for ConfigRefused {
    fn from(e: KafkaError) -> Self {
        ConfigRefused(match e {
            KafkaError::ClientConfig(_, description, key, _value) => {
                format!("{key}: {description}")
            }
            other => other.to_string(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot create the Kafka producer: {0}")]
pub struct ProducerNotCreated(#[from] ConfigRefused);

impl KafkaConnection {
    pub fn build(name: &str, c: &KafkaConnectionConfig) -> Result<Self, ProducerNotCreated> {
        let config = client_config(c);
        let errors = LastError::default();
        let producer = config
            .create_with_context(errors.clone())
            .map_err(|e| ProducerNotCreated(ConfigRefused::from(e)))?;
        let slot = ProducerSlot {
            name: name.to_owned(),
            config,
            errors,
            current: RwLock::new((0, producer)),
        };
        Ok(KafkaConnection {
            slot: Arc::new(slot),
        })
    }

    /// The producer slot, which the routes' sinks share.
    pub fn slot(&self) -> Arc<ProducerSlot> {
        self.slot.clone()
    }

    /// Connection check: fetches cluster metadata, which needs reachability and authentication.
    /// A failure says what the client last reported (a refused password, a failed handshake),
    /// within the checks' limit of 10 s.
    pub async fn health_check(&self) -> Result<String, BoxError> {
        let (_, producer) = self.slot.get();
        let errors = self.slot.errors.clone();
        tokio::task::spawn_blocking(move || {
            let fetched = producer
                .client()
                .fetch_metadata(None, Duration::from_secs(8));
            match fetched {
                Ok(metadata) => {
                    errors.clear();
                    Ok(format!("{} broker(s)", metadata.brokers().len()))
                }
                Err(e) => Err(errors.explain(e)),
            }
        })
        .await?
    }

    /// The metadata of `topic`: its partitions, or why the cluster has none.
    pub async fn topic_check(&self, topic: String) -> Result<String, BoxError> {
        let (_, producer) = self.slot.get();
        let errors = self.slot.errors.clone();
        tokio::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(8))
                .map_err(|e| errors.explain(e))?;
            let found = metadata.topics().iter().find(|t| t.name() == topic);
            match found {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(format!(
                    "topic \"{topic}\": {} partition(s)",
                    t.partitions().len()
                )),
                Some(t) => Err(format!(
                    "topic \"{topic}\": {}",
                    t.error()
                        .map(|e| format!("{e:?}"))
                        .unwrap_or_else(|| "no partitions".into())
                )
                .into()),
                None => Err(format!("topic \"{topic}\": not in the cluster's metadata").into()),
            }
        })
        .await?
    }

    pub async fn flush(&self, timeout: Duration) {
        let (_, producer) = self.slot.get();
        let _ = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_producer_leaves_out_what_only_a_consumer_takes() {
        let text = "bootstrap_servers = \"127.0.0.1:9092\"\n\
                    [librdkafka]\n\"session.timeout.ms\" = \"6000\"\n\
                    \"queued.min.messages\" = \"500\"\n\"socket.timeout.ms\" = \"7000\"\n";
        let c: KafkaConnectionConfig = toml::from_str(text).unwrap();
        let cfg = client_config(&c);
        assert_eq!(cfg.get("socket.timeout.ms"), Some("7000"));
        assert_eq!(cfg.get("session.timeout.ms"), None);
        assert_eq!(cfg.get("queued.min.messages"), None);
        // librdkafka takes what is left.
        let _producer: FutureProducer = cfg.create().expect("a producer");
    }
}
