//! The second phase of loading: checks that need more than types (URLs, filters, templates,
//! references between sections, values that client libraries would reject or panic on). Every
//! problem is collected; none stops the others from being found.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::load::SourceMap;
use super::model::*;
use super::problem::Problem;
use crate::template::Template;
use crate::topic::{check_kafka_topic, check_mqtt_filter, check_mqtt_topic};

/// The sections that deserialized, and the names of those that did not.
#[derive(Default)]
pub struct Parts {
    pub mqtt: Option<MqttConfig>,
    pub connections: BTreeMap<String, ConnectionConfig>,
    pub broken_connections: HashSet<String>,
    pub routes: Vec<RouteConfig>,
    pub broken_routes: usize,
    pub dead_letter: Option<DeadLetterConfig>,
    pub admin: Option<AdminConfig>,
}

/// librdkafka settings the bridge owns: its delivery guarantee depends on them.
const FIXED_LIBRDKAFKA: &[&str] = &[
    "acks",
    "request.required.acks",
    "enable.idempotence",
    "bootstrap.servers",
    "metadata.broker.list",
    "compression.type",
    "compression.codec",
    "message.timeout.ms",
    "delivery.timeout.ms",
];

pub fn validate(parts: &Parts, src: &SourceMap<'_>) -> Vec<Problem> {
    let mut v = Validator {
        src,
        problems: Vec::new(),
    };
    if let Some(mqtt) = &parts.mqtt {
        v.mqtt(mqtt);
    }
    for (name, conn) in &parts.connections {
        v.connection(name, conn);
    }
    v.routes(parts);
    if let Some(dl) = &parts.dead_letter {
        v.dead_letter(dl);
    }
    if let Some(listen) = parts.admin.as_ref().and_then(|a| a.listen.as_deref()) {
        if listen.parse::<SocketAddr>().is_err() {
            let msg = format!("\"{listen}\" is not an address such as \"127.0.0.1:9464\"");
            v.problem("[admin]", Some("listen"), msg);
        }
    }
    v.problems
}

struct Validator<'s, 'a> {
    src: &'s SourceMap<'a>,
    problems: Vec<Problem>,
}

impl Validator<'_, '_> {
    fn problem(&mut self, section: &str, field: Option<&str>, msg: impl Into<String>) {
        let line = self.src.line(section, field);
        self.problems
            .push(Problem::new(section, field, msg).at(line));
    }

    fn mqtt(&mut self, m: &MqttConfig) {
        const S: &str = "[mqtt]";
        match url::Url::parse(&m.url) {
            Err(e) => self.problem(S, Some("url"), format!("\"{}\" is not a URL: {e}", m.url)),
            Ok(u) => {
                if !matches!(u.scheme(), "mqtt" | "mqtts" | "tcp" | "ssl") {
                    let msg = format!("scheme \"{}\" is not mqtt:// or mqtts://", u.scheme());
                    self.problem(S, Some("url"), msg);
                } else if u.host_str().is_none_or(str::is_empty) {
                    self.problem(S, Some("url"), format!("\"{}\" names no host", m.url));
                } else if !matches!(u.path(), "" | "/") {
                    self.problem(S, Some("url"), "a broker URL takes no path");
                }
                if m.tls.is_some() && matches!(u.scheme(), "mqtt" | "tcp") {
                    self.problem(S, Some("tls"), "set, but the url is not mqtts://");
                }
            }
        }
        if m.password.is_some() && m.password_file.is_some() {
            self.problem(
                S,
                Some("password_file"),
                "set together with `password`: keep one",
            );
        }
        let prefix_ok = m
            .client_id_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if m.client_id_prefix.is_empty() || !prefix_ok {
            self.problem(
                S,
                Some("client_id_prefix"),
                "must be letters, digits, `-`, `_` or `.`",
            );
        }
        if m.receive_maximum == 0 {
            self.problem(S, Some("receive_maximum"), "must be at least 1");
        }
        if m.max_packet_size < 1024 {
            self.problem(S, Some("max_packet_size"), "must be at least 1024 bytes");
        }
        if m.session_expiry > Duration::from_secs(u32::MAX as u64) {
            self.problem(S, Some("session_expiry"), "must be at most 4294967295s");
        }
        if m.keep_alive < Duration::from_secs(5) || m.keep_alive > Duration::from_secs(65535) {
            self.problem(S, Some("keep_alive"), "must be between 5s and 65535s");
        }
        if let Some(tls) = &m.tls {
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                self.problem(S, Some("tls"), "cert_file and key_file go together");
            }
        }
    }

    fn connection(&mut self, name: &str, conn: &ConnectionConfig) {
        let section = format!("connection \"{name}\"");
        match conn {
            ConnectionConfig::Kafka(k) => {
                if k.bootstrap_servers
                    .split(',')
                    .any(|s| s.trim().rsplit_once(':').is_none())
                {
                    let msg = format!("\"{}\" is not a host:port list", k.bootstrap_servers);
                    self.problem(&section, Some("bootstrap_servers"), msg);
                }
                for key in k.librdkafka.keys() {
                    if FIXED_LIBRDKAFKA.contains(&key.as_str()) {
                        let field = format!("librdkafka.{key}");
                        let msg = "set by the bridge (use the connection's own keys, or leave it: \
                                   acks=all and idempotence are what make delivery safe)";
                        self.problem(&section, Some(&field), msg);
                    }
                }
                let fixed_ok = k
                    .librdkafka
                    .keys()
                    .all(|key| !FIXED_LIBRDKAFKA.contains(&key.as_str()));
                if fixed_ok {
                    if let Err(e) = crate::sinks::kafka::client_config(k).create_native_config() {
                        self.problem(
                            &section,
                            Some("librdkafka"),
                            format!(
                                "librdkafka refuses the settings: {}",
                                crate::sinks::kafka::describe_config_error(&e)
                            ),
                        );
                    }
                }
                if k.delivery_timeout < Duration::from_secs(1) {
                    self.problem(&section, Some("delivery_timeout"), "must be at least 1s");
                }
            }
            ConnectionConfig::File(f) => {
                if f.path.as_os_str().is_empty() {
                    self.problem(
                        &section,
                        Some("path"),
                        "empty (use \"-\" for standard output)",
                    );
                }
            }
        }
    }

    fn routes(&mut self, parts: &Parts) {
        let mut names = HashSet::new();
        for route in &parts.routes {
            let section = format!("route \"{}\"", route.name);
            if !names.insert(route.name.as_str()) {
                self.problem(&section, Some("name"), "used by another route too");
            }
            self.route(&section, route, parts);
        }
    }

    fn route(&mut self, s: &str, r: &RouteConfig, parts: &Parts) {
        if r.name.is_empty()
            || !r
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        {
            self.problem(s, Some("name"), "must be letters, digits, `-` or `_`");
        }
        if r.filters.is_empty() {
            self.problem(s, Some("filters"), "empty: give at least one topic filter");
        }
        for f in &r.filters {
            if let Err(e) = check_mqtt_filter(f) {
                self.problem(
                    s,
                    Some("filters"),
                    format!("\"{f}\" is not a valid topic filter: {e}"),
                );
            }
        }
        let group = r.share_group();
        if group.is_empty() || group.contains(['/', '+', '#']) {
            self.problem(
                s,
                Some("share_group"),
                "must be non-empty, without `/`, `+` or `#`",
            );
        }
        if r.consumers == 0 {
            self.problem(s, Some("consumers"), "must be at least 1");
        }
        match r.qos {
            0 | 1 => {}
            2 => self.problem(
                s,
                Some("qos"),
                "2 is not supported: QoS 1 already gives at-least-once delivery, and QoS 2 \
                 sessions cannot be resumed after a reconnect by the MQTT client the bridge uses",
            ),
            n => self.problem(s, Some("qos"), format!("{n} is not 0 or 1")),
        }
        if r.batch_size == 0 || r.batch_size > 10_000 {
            self.problem(s, Some("batch_size"), "must be between 1 and 10000");
        }
        match parts.connections.get(&r.connection) {
            Some(ConnectionConfig::Kafka(_)) => self.kafka_route(s, r),
            Some(ConnectionConfig::File(_)) => {
                for (field, set) in [("topic", r.topic.is_some()), ("key", r.key.is_some())] {
                    if set {
                        self.problem(s, Some(field), "file connections take no topic or key");
                    }
                }
            }
            None if parts.broken_connections.contains(&r.connection) => self.templates(s, r),
            None => {
                self.templates(s, r);
                let known: Vec<_> = parts
                    .connections
                    .keys()
                    .map(|k| format!("\"{k}\""))
                    .collect();
                let known = if known.is_empty() {
                    "none is defined".into()
                } else {
                    format!("known: {}", known.join(", "))
                };
                let msg = format!(
                    "names connection \"{}\", which is not defined ({known})",
                    r.connection
                );
                self.problem(s, Some("connection"), msg);
            }
        }
    }

    fn kafka_route(&mut self, s: &str, r: &RouteConfig) {
        if r.topic.is_none() {
            self.problem(
                s,
                Some("topic"),
                "missing: a Kafka route needs a topic (or template)",
            );
        }
        self.templates(s, r);
    }

    /// Checks the topic and key templates, whatever the connection.
    fn templates(&mut self, s: &str, r: &RouteConfig) {
        match r.topic.as_deref() {
            None => {}
            Some(topic) => match Template::parse(topic) {
                Err(e) => self.problem(s, Some("topic"), format!("bad template \"{topic}\": {e}")),
                Ok(t) => {
                    if let Some(Err(e)) = t.as_literal().map(check_kafka_topic) {
                        self.problem(s, Some("topic"), e);
                    }
                }
            },
        }
        if let Some(key) = r.key.as_deref() {
            if let Err(e) = Template::parse(key) {
                self.problem(s, Some("key"), format!("bad template \"{key}\": {e}"));
            }
        }
    }

    fn dead_letter(&mut self, dl: &DeadLetterConfig) {
        const S: &str = "[dead_letter]";
        if dl.path.is_some() && dl.topic.is_some() {
            self.problem(S, Some("topic"), "set together with `path`: keep one");
        }
        if let Some(Err(e)) = dl.topic.as_deref().map(check_mqtt_topic) {
            self.problem(S, Some("topic"), e);
        }
    }
}
