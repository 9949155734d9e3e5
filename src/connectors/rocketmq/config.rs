//! `type = "rocketmq"`: the connection's settings (name servers, producer group, ACL keys) and
//! the keys a RocketMQ route takes (topic, tag and keys templates). Every `///` comment on a
//! field is user documentation.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::settings::Secret;
use crate::template::Template;

/// `[connections.NAME]` with `type = "rocketmq"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RocketmqConnectionConfig {
    /// Name server addresses, `host:port` each.
    pub namesrv: Vec<String>,
    /// The producer group. Default "mqbridge".
    #[serde(default = "default_producer_group")]
    pub producer_group: String,
    /// ACL access key (with `secret_key`).
    pub access_key: Option<Secret>,
    /// Read the access key from this file instead.
    pub access_key_file: Option<PathBuf>,
    /// ACL secret key (`${ENV}`; never logged).
    pub secret_key: Option<Secret>,
    /// Read the secret key from this file instead.
    pub secret_key_file: Option<PathBuf>,
    /// How long one send may take. Default "3s".
    #[serde(default = "default_send_timeout", with = "humantime_serde")]
    pub send_timeout: Duration,
    /// Take a send the broker stored but could not flush or replicate in time
    /// (`FLUSH_DISK_TIMEOUT`, `FLUSH_SLAVE_TIMEOUT`, `SLAVE_NOT_AVAILABLE`) as delivered.
    /// Default false: retried, since the message may not survive the broker's failure.
    #[serde(default)]
    pub accept_unflushed: bool,
}

/// The keys of a `[[routes]]` entry whose connection is a RocketMQ one.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RocketmqRouteConfig {
    /// RocketMQ topic: a literal or a template such as "chargers-{topic.2}" (letters, digits,
    /// `-`, `_`, `%` and `|`; at most 127). Required.
    pub topic: Option<Template>,
    /// Tag template, e.g. "{topic.3}". Default: no tag.
    pub tag: Option<Template>,
    /// Keys template (the console finds a message by key). Default "{message_id}".
    pub keys: Option<Template>,
}

fn default_producer_group() -> String {
    "mqbridge".into()
}
fn default_send_timeout() -> Duration {
    Duration::from_secs(3)
}
