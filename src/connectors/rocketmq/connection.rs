//! A RocketMQ connection: the client's runtime (rocketmq-client-rust runs its own tokio
//! runtime for its background work) and a started producer, shared by the connection's
//! routes; and what a client error means for the messages.

use std::sync::Arc;
use std::time::Duration;

use rocketmq_client_rust::{
    AclClientRPCHook, ClientError, ClientRuntime, ClientRuntimeConfig, DefaultMQProducer,
    MQBrokerException, MQClientException, SessionCredentials, TelemetryHandle,
};
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};

use super::config::RocketmqConnectionConfig;
use crate::flow::{BoxError, Retry};
use crate::settings::Secret;

/// The broker's default and largest message (and batch) body.
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;

pub struct RocketmqConnection {
    pub(super) producer: DefaultMQProducer,
    pub(super) send_timeout: Duration,
    pub(super) accept_unflushed: bool,
    pub(super) namesrv: String,
    runtime: Arc<ClientRuntime>,
    // Dropped last: the runtime the client's tasks run on.
    _owner: RuntimeOwner,
}

/// A runtime of its own for a rocketmq-client-rust client (its threads named `thread_name`),
/// and the client runtime on it. The owner must outlive the client: drop it last.
pub fn client_runtime(thread_name: String) -> Result<(RuntimeOwner, Arc<ClientRuntime>), BoxError> {
    let owner = RuntimeOwner::plan(RuntimeConfig {
        thread_name,
        ..Default::default()
    })?
    .build()?;
    let runtime = ClientRuntime::try_new(
        owner.root_context().component("mqbridge"),
        ClientRuntimeConfig::default(),
        TelemetryHandle::noop(),
    )?;
    Ok((owner, runtime))
}

/// The ACL hook for the connection's `access_key` and `secret_key`, when it has them.
pub fn acl_hook(c: &RocketmqConnectionConfig) -> Result<Option<Arc<AclClientRPCHook>>, BoxError> {
    let access = Secret::inline_or_file(&c.access_key, &c.access_key_file)?;
    let secret = Secret::inline_or_file(&c.secret_key, &c.secret_key_file)?;
    Ok(match (access, secret) {
        (Some(access), Some(secret)) => {
            let credentials = SessionCredentials::with_keys(access.expose(), secret.expose());
            Some(Arc::new(AclClientRPCHook::new(credentials)))
        }
        _ => None,
    })
}

impl RocketmqConnection {
    pub async fn start(c: &RocketmqConnectionConfig) -> Result<Self, BoxError> {
        let (owner, runtime) = client_runtime("rocketmq".into())?;
        let namesrv = c.namesrv.join(";");
        let mut builder = DefaultMQProducer::builder(runtime.clone())
            .producer_group(c.producer_group.as_str())
            .name_server_addr(namesrv.as_str())
            .send_msg_timeout(c.send_timeout.as_millis().min(u32::MAX as u128) as u32)
            .max_message_size(MAX_MESSAGE as u32);
        if let Some(hook) = acl_hook(c)? {
            builder = builder.rpc_hook(hook);
        }
        let mut producer = builder.build();
        producer.start().await.map_err(|e| describe(&e))?;
        Ok(RocketmqConnection {
            producer,
            send_timeout: c.send_timeout,
            accept_unflushed: c.accept_unflushed,
            namesrv,
            runtime,
            _owner: owner,
        })
    }

    /// The connection check: a name server takes a TCP connection (the producer asks them for
    /// routes as it needs them).
    pub async fn reachable(&self) -> Result<String, BoxError> {
        let mut errors = Vec::new();
        for addr in self.namesrv.split(';') {
            let connect = tokio::net::TcpStream::connect(addr);
            match tokio::time::timeout(Duration::from_secs(5), connect).await {
                Ok(Ok(_)) => return Ok(format!("name server {addr} accepts connections")),
                Ok(Err(e)) => errors.push(format!("{addr}: {e}")),
                Err(_) => errors.push(format!("{addr}: no answer in 5s")),
            }
        }
        Err(errors.join("; ").into())
    }

    /// The queues a topic's route offers for sending (`mqbridge check`).
    pub async fn topic_queues(&self, topic: &str) -> Result<String, BoxError> {
        let mut producer = self.producer.clone();
        let queues = producer
            .fetch_publish_message_queues(topic)
            .await
            .map_err(|e| describe(&e))?;
        match queues.len() {
            0 => Err(format!("topic \"{topic}\": no queue to send to").into()),
            n => Ok(format!("topic \"{topic}\": {n} queue(s)")),
        }
    }

    pub async fn shutdown(&self) {
        let mut producer = self.producer.clone();
        producer.shutdown().await;
        let _ = self.runtime.shutdown().await;
    }
}

/// What the client says went wrong, with the detail its `Display` leaves out.
pub fn describe(e: &ClientError) -> String {
    if let Some(broker) = MQBrokerException::from_client_error(e) {
        return format!(
            "the broker refused it: code {}: {}",
            broker.response_code(),
            broker.error_message().unwrap_or_default()
        );
    }
    if let Some(client) = e.source_ref::<MQClientException>() {
        if let Some(text) = client.error_message() {
            return format!("{} ({text})", e.code().as_str());
        }
    }
    format!("{} ({e})", e.code().as_str())
}

/// What a failed send means for its messages (README "RocketMQ": the error table).
pub fn classify(e: &ClientError) -> (&'static str, Retry) {
    if let Some(code) = e.broker_response_code() {
        return match code {
            // SystemError, SystemBusy, FlowControl; ServiceNotAvailable.
            1 | 2 | 14 | 215 => ("broker_busy", Retry::Retriable),
            13 => ("too_large", Retry::Permanent),
            // The topic is not there and the broker does not create it: an operator's job.
            17 => ("topic_not_exist", Retry::Configuration),
            16 => ("no_permission", Retry::Configuration),
            _ => ("broker_error", Retry::Retriable),
        };
    }
    if let Some(client) = e.source_ref::<MQClientException>() {
        match client.response_code() {
            13 => return ("too_large", Retry::Permanent),
            10003 | 10005 => return ("no_route", Retry::Retriable),
            _ => {}
        }
    }
    match e.code().as_str() {
        "core.operation.timed_out"
        | "transport.response.timeout"
        | "transport.write.timeout"
        | "transport.connection.timeout" => ("timeout", Retry::Retriable),
        _ => ("transport", Retry::Retriable),
    }
}
