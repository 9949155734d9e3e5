//! The MQTT kind's entry point (`impl Connector for Mqtt`): a broker, read through
//! shared-subscription consumers and written through pipelined publishers; the checks of its
//! settings, and the probes `mqbridge check` makes.

use std::sync::Arc;
use std::time::Duration;

use super::config::{MqttConfig, MqttSinkConfig, MqttSourceConfig, PROTOCOL_MAX_PACKET_SIZE};
use super::options::Endpoint;
use super::probe;
use super::publication::PublishSettings;
use super::sink::MqttSink;
use super::source::MqttSource;
use super::template::TopicTemplate;
use crate::connectors::{Connector, SinkContext};
use crate::flow::{BoxError, Sink};
use crate::pipeline::{Source, SourceContext};
use crate::settings::{resolve_relative, Check, Secret};
use crate::template::Vocabulary;
use crate::topic::check_mqtt_filter;

pub struct Mqtt;

impl Connector for Mqtt {
    const NAME: &'static str = "mqtt";
    /// Like Kafka and files: a topic's (or a partition's) messages in order.
    const ORDERED_BY_DEFAULT: bool = true;
    /// A key's messages take one connection, which publishes in order: the next batch of a key
    /// goes out while the broker acknowledges the last of the one before.
    const ORDER_WINDOW: usize = 2;
    const FACES_DEVICES: bool = true;
    const READABLE: bool = true;
    const VOCABULARY: Vocabulary = Vocabulary::Mqtt;
    type ConnectionConfig = MqttConfig;
    type SinkConfig = MqttSinkConfig;
    type SourceConfig = MqttSourceConfig;
    type Connection = Endpoint;

    fn resolve_paths(c: &mut MqttConfig, base: &std::path::Path) {
        if let Some(tls) = &mut c.tls {
            let files = [&mut tls.ca_file, &mut tls.cert_file, &mut tls.key_file];
            resolve_relative(base, files);
        }
        resolve_relative(base, [&mut c.password_file]);
    }

    fn files_read(c: &MqttConfig) -> Vec<std::path::PathBuf> {
        let tls = c.tls.as_ref();
        let tls = tls
            .into_iter()
            .flat_map(|t| [&t.ca_file, &t.cert_file, &t.key_file]);
        tls.chain([&c.password_file]).flatten().cloned().collect()
    }

    fn warnings(c: &MqttConfig) -> Vec<String> {
        let mut out = Vec::new();
        if c.max_packet_size < PROTOCOL_MAX_PACKET_SIZE {
            out.push(format!(
                "max_packet_size = {}: the broker drops a larger message for the bridge \
                 without a trace (no error, no dead letter); leave it unset to take every message \
                 the protocol allows",
                c.max_packet_size
            ));
        }
        out
    }

    fn check_connection(c: &MqttConfig, check: &mut Check<'_>) {
        check_url(c, check);
        Secret::check_inline_or_file(check, "password", &c.password, &c.password_file);
        let prefix_ok = c
            .client_id_prefix
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
        if c.client_id_prefix.is_empty() || !prefix_ok {
            let msg = "must be letters, digits, `-`, `_` or `.`";
            check.field("client_id_prefix", msg);
        }
        if c.receive_maximum == 0 {
            check.field("receive_maximum", "must be at least 1");
        }
        if c.max_packet_size < 1024 || c.max_packet_size > PROTOCOL_MAX_PACKET_SIZE {
            let msg = format!("must be between 1024 and {PROTOCOL_MAX_PACKET_SIZE} bytes");
            check.field("max_packet_size", msg);
        }
        if c.max_inflight_bytes < 1024 {
            check.field("max_inflight_bytes", "must be at least 1024 bytes");
        }
        if c.session_expiry > Duration::from_secs(u32::MAX as u64) {
            check.field("session_expiry", "must be at most 4294967295s");
        }
        if c.keep_alive < Duration::from_secs(5) || c.keep_alive > Duration::from_secs(65535) {
            check.field("keep_alive", "must be between 5s and 65535s");
        }
        if let Some(tls) = &c.tls {
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                check.field("tls", "cert_file and key_file go together");
            }
        }
    }

    fn check_sink(c: &MqttSinkConfig, vocabulary: Vocabulary, check: &mut Check<'_>) {
        if c.qos > 1 {
            check.field("qos", format!("{}: must be 0 or 1", c.qos));
        }
        if !(1..=16).contains(&c.mqtt_connections) {
            check.field("mqtt_connections", "must be between 1 and 16");
        }
        if let Some(expiry) = c.message_expiry {
            if expiry < Duration::from_secs(1) || expiry.as_secs() > u32::MAX as u64 {
                check.field("message_expiry", "must be between 1s and 136 years");
            }
        }
        match topic_template(c, vocabulary) {
            Ok(t) => {
                if let Err(e) = t.check_static() {
                    check.field("mqtt_topic", e);
                }
            }
            Err(e) => check.field("mqtt_topic", e),
        }
    }

    fn sink_uses_tag(c: &MqttSinkConfig) -> bool {
        c.mqtt_topic.as_deref().is_some_and(|t| t.contains("{tag}"))
    }

    fn complete_source(c: &mut MqttSourceConfig, route: &str) {
        c.share_group.get_or_insert_with(|| route.to_owned());
    }

    fn check_source(c: &MqttSourceConfig, _uses_tag: bool, check: &mut Check<'_>) {
        if c.filters.is_empty() {
            check.field("filters", "empty: give at least one topic filter");
        }
        for f in &c.filters {
            if let Err(e) = check_mqtt_filter(f) {
                let msg = format!("\"{f}\" is not a valid topic filter: {e}");
                check.field("filters", msg);
            }
        }
        let group = c.share_group();
        if group.is_empty() || group.contains(['/', '+', '#']) {
            check.field("share_group", "must be non-empty, without `/`, `+` or `#`");
        }
        if c.consumers == 0 {
            check.field("consumers", "must be at least 1");
        }
        match c.qos {
            0 | 1 => {}
            2 => check.field(
                "qos",
                "2 is not supported: QoS 1 already gives at-least-once delivery, and QoS 2 \
                 sessions cannot be resumed after a reconnect by the MQTT client the bridge uses",
            ),
            n => check.field("qos", format!("{n} is not 0 or 1")),
        }
    }

    async fn connect(_name: &str, c: &MqttConfig) -> Result<Endpoint, BoxError> {
        Ok(Endpoint::new(c)?)
    }

    fn sink(
        endpoint: &Endpoint,
        context: &SinkContext<'_>,
        c: &MqttSinkConfig,
    ) -> Result<Arc<dyn Sink>, BoxError> {
        let settings = PublishSettings {
            topic: topic_template(c, context.vocabulary)?,
            qos: c.qos,
            retain: c.retain,
            message_expiry: c.message_expiry,
        };
        let config = endpoint.config();
        let client_id = format!("{}-{}", config.client_id_prefix, context.client);
        Ok(Arc::new(MqttSink::start(
            endpoint,
            &client_id,
            c.mqtt_connections,
            context.in_flight + 64,
            config.origin_marker(),
            settings,
        )))
    }

    fn source(
        endpoint: &Endpoint,
        _: &MqttConfig,
        context: &SourceContext,
        c: &MqttSourceConfig,
    ) -> Result<Box<dyn Source>, BoxError> {
        Ok(Box::new(MqttSource::new(endpoint, context, c)))
    }

    async fn health_check(endpoint: &Endpoint) -> Result<String, BoxError> {
        probe::connect(endpoint).await
    }

    async fn probe_source(
        endpoint: &Endpoint,
        c: &MqttSourceConfig,
    ) -> Vec<(String, Result<String, BoxError>)> {
        probe::filters(endpoint, &c.filters).await
    }
}

/// The sink's topic template, over messages of `vocabulary`: `mqtt_topic`, or `{topic}` for
/// messages read from MQTT, which keep their topic.
fn topic_template(c: &MqttSinkConfig, vocabulary: Vocabulary) -> Result<TopicTemplate, String> {
    match (&c.mqtt_topic, vocabulary) {
        (Some(text), _) => TopicTemplate::parse_for(text, vocabulary)
            .map_err(|e| format!("bad template \"{text}\": {e}")),
        (None, Vocabulary::Mqtt) => TopicTemplate::parse_for("{topic}", vocabulary),
        (None, Vocabulary::Record) => Err("missing: the topic to publish each message to, a \
             template such as \"devices/{key}/commands\""
            .into()),
    }
}

fn check_url(c: &MqttConfig, check: &mut Check<'_>) {
    match url::Url::parse(&c.url) {
        Err(e) => check.field("url", format!("\"{}\" is not a URL: {e}", c.url)),
        Ok(u) => {
            if !matches!(u.scheme(), "mqtt" | "mqtts" | "tcp" | "ssl") {
                let msg = format!("scheme \"{}\" is not mqtt:// or mqtts://", u.scheme());
                check.field("url", msg);
            } else if u.host_str().is_none_or(str::is_empty) {
                check.field("url", format!("\"{}\" names no host", c.url));
            } else if !matches!(u.path(), "" | "/") {
                check.field("url", "a broker URL takes no path");
            }
            if c.tls.is_some() && matches!(u.scheme(), "mqtt" | "tcp") {
                check.field("tls", "set, but the url is not mqtts://");
            }
        }
    }
}
