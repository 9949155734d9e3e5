//! The second phase of loading: checks that need more than types (URLs, filters, references
//! between sections, values that client libraries would reject or panic on). Each connection
//! and each route's kind settings are checked by their kind. Every problem is collected; none
//! stops the others from being found.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use super::model::*;
use crate::downlinks::{check_names, DownlinkConfig};
use crate::settings::Problem;
use crate::settings::Secret;
use crate::settings::SourceMap;
use crate::settings::{Check, Checker};
use crate::topic::{check_mqtt_filter, check_mqtt_topic};

/// The sections that deserialized, and the names of those that did not.
#[derive(Default)]
pub struct Parts {
    pub mqtt: Option<MqttConfig>,
    pub connections: BTreeMap<String, ConnectionConfig>,
    pub broken_connections: HashSet<String>,
    /// Each route's common keys, with its kind's settings where they could be read.
    pub routes: Vec<(RouteConfig<()>, Option<RouteSinkConfig>)>,
    pub broken_routes: usize,
    pub downlinks: Vec<DownlinkConfig>,
    pub broken_downlinks: usize,
    pub dead_letter: Option<DeadLetterConfig>,
    pub admin: Option<AdminConfig>,
}

pub fn validate(parts: &Parts, src: &SourceMap<'_>) -> Vec<Problem> {
    let mut checker = Checker::new(src);
    if let Some(mqtt) = &parts.mqtt {
        check_mqtt(mqtt, &mut checker.section("[mqtt]"));
    }
    for (name, conn) in &parts.connections {
        conn.check(&mut checker.section(&format!("connection \"{name}\"")));
    }
    let mut names = HashSet::new();
    for (route, sink) in &parts.routes {
        let label = format!("route \"{}\"", route.name);
        let mut check = checker.section(&label);
        if !names.insert(route.name.as_str()) {
            check.field("name", "used by another route too");
        }
        check_route(route, &mut check);
        if let Some(sink) = sink {
            sink.check(&mut check);
        }
        check_route_connection(route, parts, &mut check);
    }
    let mut downlinks = HashSet::new();
    let mut groups = HashSet::new();
    for d in &parts.downlinks {
        let label = format!("downlink \"{}\"", d.name);
        let mut check = checker.section(&label);
        let routes = parts.routes.iter().map(|(r, _)| r.name.as_str());
        check_names(routes, &d.name, &mut downlinks, &mut check);
        d.check(parts.connections.get(&d.connection), &mut check);
        if !groups.insert((d.connection.clone(), d.group())) {
            check.field(
                "group",
                format!(
                    "\"{}\" is another downlink's group on connection \"{}\" too: the two \
                     would split the topic's partitions or queues between them",
                    d.group(),
                    d.connection
                ),
            );
        }
        check_connection_defined(&d.connection, parts, &mut check);
    }
    if let Some(dl) = &parts.dead_letter {
        check_dead_letter(dl, &mut checker.section("[dead_letter]"));
    }
    if let Some(admin) = &parts.admin {
        check_admin(admin, &mut checker.section("[admin]"));
    }
    checker.into_problems()
}

fn check_admin(a: &AdminConfig, c: &mut Check<'_>) {
    Secret::check_inline_or_file(c, "token", &a.token, &a.token_file);
    let tokenless = a.token.is_none() && a.token_file.is_none();
    if let Some(listen) = a.listen.filter(|l| !l.ip().is_loopback() && tokenless) {
        c.field(
            "listen",
            format!(
                "{listen} is reachable from other hosts: set `token` (or `token_file`) so that \
                 only operators can pause, resume and reload, or listen on 127.0.0.1"
            ),
        );
    }
    if a.check_interval < Duration::from_secs(1) {
        c.field("check_interval", "must be at least 1s");
    }
    for host in &a.allowed_hosts {
        let name_ok = !host.is_empty()
            && host
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '.');
        if !name_ok {
            c.field(
                "allowed_hosts",
                format!("\"{host}\" is not a host name (letters, digits, `-` and `.`; no port)"),
            );
        }
    }
}

fn check_mqtt(m: &MqttConfig, c: &mut Check<'_>) {
    match url::Url::parse(&m.url) {
        Err(e) => c.field("url", format!("\"{}\" is not a URL: {e}", m.url)),
        Ok(u) => {
            if !matches!(u.scheme(), "mqtt" | "mqtts" | "tcp" | "ssl") {
                let msg = format!("scheme \"{}\" is not mqtt:// or mqtts://", u.scheme());
                c.field("url", msg);
            } else if u.host_str().is_none_or(str::is_empty) {
                c.field("url", format!("\"{}\" names no host", m.url));
            } else if !matches!(u.path(), "" | "/") {
                c.field("url", "a broker URL takes no path");
            }
            if m.tls.is_some() && matches!(u.scheme(), "mqtt" | "tcp") {
                c.field("tls", "set, but the url is not mqtts://");
            }
        }
    }
    if m.password.is_some() && m.password_file.is_some() {
        c.field("password_file", "set together with `password`: keep one");
    }
    let prefix_ok = m
        .client_id_prefix
        .chars()
        .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
    if m.client_id_prefix.is_empty() || !prefix_ok {
        c.field(
            "client_id_prefix",
            "must be letters, digits, `-`, `_` or `.`",
        );
    }
    if m.receive_maximum == 0 {
        c.field("receive_maximum", "must be at least 1");
    }
    if m.max_packet_size < 1024 || m.max_packet_size > PROTOCOL_MAX_PACKET_SIZE {
        let msg = format!("must be between 1024 and {PROTOCOL_MAX_PACKET_SIZE} bytes");
        c.field("max_packet_size", msg);
    }
    if m.max_inflight_bytes < 1024 {
        c.field("max_inflight_bytes", "must be at least 1024 bytes");
    }
    if m.session_expiry > Duration::from_secs(u32::MAX as u64) {
        c.field("session_expiry", "must be at most 4294967295s");
    }
    if m.keep_alive < Duration::from_secs(5) || m.keep_alive > Duration::from_secs(65535) {
        c.field("keep_alive", "must be between 5s and 65535s");
    }
    if let Some(tls) = &m.tls {
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            c.field("tls", "cert_file and key_file go together");
        }
    }
}

/// The keys every route takes.
fn check_route(r: &RouteConfig<()>, c: &mut Check<'_>) {
    if r.name.is_empty()
        || !r
            .name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_".contains(ch))
    {
        c.field("name", "must be letters, digits, `-` or `_`");
    }
    match (&r.source, r.filters.is_empty()) {
        (None, true) => c.field("filters", "empty: give at least one topic filter"),
        (Some(_), false) => c.field(
            "filters",
            "a route with a `source` reads that topic, not the MQTT broker: remove `filters`",
        ),
        _ => {}
    }
    for f in &r.filters {
        if let Err(e) = check_mqtt_filter(f) {
            c.field(
                "filters",
                format!("\"{f}\" is not a valid topic filter: {e}"),
            );
        }
    }
    let group = r.share_group();
    if group.is_empty() || group.contains(['/', '+', '#']) {
        c.field("share_group", "must be non-empty, without `/`, `+` or `#`");
    }
    if r.consumers == 0 {
        c.field("consumers", "must be at least 1");
    }
    match r.qos {
        0 | 1 => {}
        2 => c.field(
            "qos",
            "2 is not supported: QoS 1 already gives at-least-once delivery, and QoS 2 \
             sessions cannot be resumed after a reconnect by the MQTT client the bridge uses",
        ),
        n => c.field("qos", format!("{n} is not 0 or 1")),
    }
    c.delivery(r.batch_size, r.concurrency, r.max_attempts);
    c.rules(&r.rules());
}

fn check_route_connection(r: &RouteConfig<()>, parts: &Parts, c: &mut Check<'_>) {
    check_connection_defined(&r.connection, parts, c);
    let (Some(source), Some(spec)) = (&r.source, r.read_spec()) else {
        return;
    };
    let mut c = c.inside("source");
    check_connection_defined(&source.connection, parts, &mut c);
    let Some(connection) = parts.connections.get(&source.connection) else {
        return;
    };
    if !connection.readable() {
        let kind = connection.kind();
        let msg = format!(
            "\"{}\" is a {kind} connection; a route reads from a kafka or rocketmq connection",
            source.connection
        );
        c.field("connection", msg);
        return;
    }
    if source.group.as_deref() == Some("") {
        c.field("group", "empty");
    }
    connection.check_reader(&spec, false, &mut c);
}

fn check_connection_defined(connection: &str, parts: &Parts, c: &mut Check<'_>) {
    let defined =
        parts.connections.contains_key(connection) || parts.broken_connections.contains(connection);
    if defined {
        return;
    }
    let known: Vec<_> = parts
        .connections
        .keys()
        .map(|k| format!("\"{k}\""))
        .collect();
    let known = match known.is_empty() {
        true => "none is defined".to_owned(),
        false => format!("known: {}", known.join(", ")),
    };
    c.field(
        "connection",
        format!("names connection \"{connection}\", which is not defined ({known})"),
    );
}

fn check_dead_letter(dl: &DeadLetterConfig, c: &mut Check<'_>) {
    if dl.path.is_some() && dl.topic.is_some() {
        c.field("topic", "set together with `path`: keep one");
    }
    if let Some(Err(e)) = dl.topic.as_deref().map(check_mqtt_topic) {
        c.field("topic", e);
    }
}
