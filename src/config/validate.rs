//! The second phase of loading: checks that need more than types (URLs, filters, references
//! between sections, values that client libraries would reject or panic on). Each connection,
//! and each route's source and sink settings, are checked by their kind. Every problem is
//! collected; none stops the others from being found.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use super::model::*;
use crate::connectors::{SinkSettings, SourceSettings, KINDS};
use crate::flow::{DEFAULT_BUDGET, RESERVE};
use crate::settings::{Check, Checker, Problem, Secret, SourceMap};
use crate::template::Vocabulary;
use crate::topic::check_mqtt_topic;

/// The sections that deserialized, and the names of those that did not.
#[derive(Default)]
pub struct Parts {
    pub saw_mqtt: bool,
    pub mqtt: Option<MqttConfig>,
    pub connections: BTreeMap<String, ConnectionConfig>,
    pub broken_connections: HashSet<String>,
    pub routes: Vec<PartRoute>,
    pub broken_routes: usize,
    pub dead_letter: Option<DeadLetterConfig>,
    /// `[dead_letter]` naming a `connection`: it, and the settings read for its kind.
    pub dead_letter_sink: Option<(String, Option<SinkSettings>)>,
    pub admin: Option<AdminConfig>,
    /// The top level's `memory_budget`, when the file sets one.
    pub memory_budget: Option<usize>,
}

/// A route's keys, with its source's and sink's settings where they could be read.
pub struct PartRoute {
    pub keys: RouteKeys,
    pub spelling: Spelling,
    /// The connection it reads.
    pub source_connection: String,
    pub source: Option<SourceSettings>,
    pub sink: Option<SinkSettings>,
    /// Its own `dead_letter`: the connection named, and the settings read for its kind.
    pub dead_letter: Option<(String, Option<SinkSettings>)>,
}

impl PartRoute {
    fn label(&self) -> String {
        format!("{} \"{}\"", self.spelling.what(), self.keys.name)
    }

    /// Where its source's keys stand: in its `source` table, or among its own keys (a
    /// downlink's, or a route's on the default broker).
    fn source_prefix(&self) -> &'static str {
        match self.spelling {
            Spelling::Route if self.source_connection != DEFAULT_BROKER => "source",
            _ => "",
        }
    }

    /// The field that names the connection it reads, if one does.
    fn source_field(&self) -> Option<&'static str> {
        match self.spelling {
            Spelling::Downlink => Some("connection"),
            Spelling::Route if self.source_connection != DEFAULT_BROKER => {
                Some("source.connection")
            }
            Spelling::Route => None,
        }
    }
}

pub fn validate(parts: &Parts, src: &SourceMap<'_>) -> Vec<Problem> {
    let mut checker = Checker::new(src);
    for (name, conn) in &parts.connections {
        conn.check(&mut checker.section(&connection_label(name)));
    }
    check_default_broker(parts, &mut checker);
    let mut names: HashMap<&str, Spelling> = HashMap::new();
    let mut members: HashSet<(&str, String)> = HashSet::new();
    for route in &parts.routes {
        let label = route.label();
        let mut check = checker.section(&label);
        check_name(route, &mut names, &mut check);
        check_keys(&route.keys, &mut check);
        check_sink(route, parts, &mut check);
        check_dead_letter_sink(route, parts, &mut check);
        check_source(route, parts, &mut check);
        check_membership(route, &mut members, &mut check);
    }
    if let Some(dl) = &parts.dead_letter {
        check_dead_letter(dl, &mut checker.section("[dead_letter]"));
    }
    if let Some((connection, sink)) = &parts.dead_letter_sink {
        let mut check = checker.section("[dead_letter]");
        check_connection_defined(connection, parts, &mut check, "connection");
        if let Some(sink) = sink {
            sink.check(Vocabulary::Mqtt, &mut check);
        }
    }
    if let Some(admin) = &parts.admin {
        check_admin(admin, &mut checker.section("[admin]"));
    }
    check_budget(parts, &mut checker.section("top level"));
    checker.into_problems()
}

/// `[mqtt]` may be left out when nothing reads it or delivers to it.
fn check_default_broker(parts: &Parts, checker: &mut Checker<'_, '_>) {
    let routes = parts.routes.iter();
    let used = routes
        .flat_map(|r| [r.source_connection.as_str(), r.keys.connection.as_str()])
        .any(|c| c == DEFAULT_BROKER);
    let dead_letters = parts
        .dead_letter
        .as_ref()
        .is_some_and(|d| d.topic.is_some());
    if !parts.saw_mqtt && (used || dead_letters || parts.routes.is_empty()) {
        let msg = "missing: the bridge needs a broker to consume from";
        checker.section("[mqtt]").problem(None, msg);
    }
}

/// Route and downlink names share one space: pause and resume name either.
fn check_name<'p>(
    route: &'p PartRoute,
    names: &mut HashMap<&'p str, Spelling>,
    check: &mut Check<'_>,
) {
    let name = route.keys.name.as_str();
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_".contains(ch));
    if !ok {
        check.field("name", "must be letters, digits, `-` or `_`");
    }
    match (names.get(name), route.spelling) {
        (None, spelling) => {
            names.insert(name, spelling);
        }
        (Some(Spelling::Route), Spelling::Route) => {
            check.field("name", "used by another route too")
        }
        (Some(Spelling::Route), Spelling::Downlink) => {
            check.field("name", "a route has this name too; names are shared")
        }
        (Some(Spelling::Downlink), Spelling::Downlink) => {
            check.field("name", "used by another downlink too")
        }
        (Some(Spelling::Downlink), Spelling::Route) => {
            check.field("name", "a downlink has this name too; names are shared")
        }
    }
}

/// The keys every route takes.
fn check_keys(keys: &RouteKeys, check: &mut Check<'_>) {
    check.rules(&keys.rules());
    let batch_size = keys.batch_size.unwrap_or(1);
    let max_attempts = keys.max_attempts.unwrap_or(1);
    check.delivery(batch_size, keys.concurrency, max_attempts);
    if let Some(size) = keys.buffer.disk().filter(|s| *s < crate::buffer::MIN_SIZE) {
        let msg = format!(
            "buffer.max_size {} is below the least, {}",
            crate::buffer::ByteSize(size),
            crate::buffer::ByteSize(crate::buffer::MIN_SIZE)
        );
        check.field("buffer", msg);
    }
}

/// What the messages of `route` carry: its source's kind's vocabulary.
fn vocabulary(route: &PartRoute, parts: &Parts) -> Vocabulary {
    let source = parts.connections.get(&route.source_connection);
    source.map_or(Vocabulary::Record, ConnectionConfig::vocabulary)
}

fn check_sink(route: &PartRoute, parts: &Parts, check: &mut Check<'_>) {
    if route.spelling == Spelling::Route {
        check_connection_defined(&route.keys.connection, parts, check, "connection");
    }
    if let Some(sink) = &route.sink {
        sink.check(vocabulary(route, parts), check);
    }
}

/// A route's own dead-letter destination: a defined connection, and its kind's settings.
fn check_dead_letter_sink(route: &PartRoute, parts: &Parts, check: &mut Check<'_>) {
    let Some((connection, sink)) = &route.dead_letter else {
        return;
    };
    check_connection_defined(connection, parts, check, "dead_letter.connection");
    if let Some(sink) = sink {
        sink.check(vocabulary(route, parts), &mut check.inside("dead_letter"));
    }
}

fn check_source(route: &PartRoute, parts: &Parts, check: &mut Check<'_>) {
    if let Some(field) = route.source_field() {
        check_connection_defined(&route.source_connection, parts, check, field);
    }
    let Some(connection) = parts.connections.get(&route.source_connection) else {
        return;
    };
    let downlink = route.spelling == Spelling::Downlink;
    if !connection.readable() || (downlink && connection.faces_devices()) {
        let readable = KINDS
            .iter()
            .filter(|k| k.readable() && !(downlink && k.faces_devices()))
            .map(|k| k.name())
            .collect::<Vec<_>>();
        let msg = format!(
            "\"{}\" is a {} connection, which cannot be read; a {} reads a {} connection",
            route.source_connection,
            connection.kind(),
            route.spelling.what(),
            either(&readable)
        );
        check.field(route.source_field().unwrap_or("source"), msg);
        return;
    }
    let Some(source) = &route.source else {
        return;
    };
    let uses_tag = route.sink.as_ref().is_some_and(SinkSettings::uses_tag);
    match route.source_prefix() {
        "" => source.check(uses_tag, check),
        prefix => source.check(uses_tag, &mut check.inside(prefix)),
    }
}

/// Two routes that join the same group on one connection would split its partitions.
fn check_membership<'p>(
    route: &'p PartRoute,
    members: &mut HashSet<(&'p str, String)>,
    check: &mut Check<'_>,
) {
    let Some(group) = route.source.as_ref().and_then(SourceSettings::membership) else {
        return;
    };
    let connection = route.source_connection.as_str();
    if !members.insert((connection, group.clone())) {
        let field = match route.source_prefix() {
            "" => "group".to_owned(),
            prefix => format!("{prefix}.group"),
        };
        check.field(
            &field,
            format!(
                "\"{group}\" is another route's or downlink's group on connection \
                 \"{connection}\" too: the two would split the topic's partitions or queues \
                 between them"
            ),
        );
    }
}

/// "kafka", "kafka or rocketmq", "kafka, mqtt or rocketmq".
fn either(names: &[&str]) -> String {
    match names {
        [] => "readable".into(),
        [one] => (*one).into(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn check_connection_defined(connection: &str, parts: &Parts, c: &mut Check<'_>, field: &str) {
    let defined =
        parts.connections.contains_key(connection) || parts.broken_connections.contains(connection);
    if defined {
        return;
    }
    let known: Vec<_> = parts
        .connections
        .keys()
        .filter(|k| *k != DEFAULT_BROKER)
        .map(|k| format!("\"{k}\""))
        .collect();
    let known = match known.is_empty() {
        true => "none is defined".to_owned(),
        false => format!("known: {}", known.join(", ")),
    };
    let msg = match connection == DEFAULT_BROKER {
        true => "names the default broker, but the file has no [mqtt]".to_owned(),
        false => format!("names connection \"{connection}\", which is not defined ({known})"),
    };
    c.field(field, msg);
}

/// Each reader keeps `RESERVE` of the memory budget for itself: a budget that cannot give every
/// reader the routes need at their least (a consumer connection and a parking one per pool of
/// MQTT routes, a member per Kafka or RocketMQ route) is refused.
fn check_budget(parts: &Parts, c: &mut Check<'_>) {
    let budget = parts.memory_budget.unwrap_or(DEFAULT_BUDGET);
    let mut pools = HashSet::new();
    let mut members = 0;
    for r in parts.routes.iter().filter(|r| r.keys.enabled) {
        let source = r.source_connection.as_str();
        let kind = parts.connections.get(source).map(|c| c.kind());
        match source == DEFAULT_BROKER || kind == Some("mqtt") {
            true => {
                pools.insert((source, r.keys.connection.as_str()));
            }
            false => members += 1,
        }
        // A disk buffer's reader holds what it read until the sink has it.
        if r.keys.buffer.disk().is_some() {
            members += 1;
        }
    }
    let readers = 2 * pools.len() + members;
    let least = readers * RESERVE;
    if budget < least {
        let size = |b: usize| crate::buffer::ByteSize(b as u64).approx();
        c.field(
            "memory_budget",
            format!(
                "{} cannot keep 64 KiB for each of the {readers} readers the routes need (a \
                 consumer and a parking connection for each broker and destination the MQTT \
                 routes share, a group member for each Kafka or RocketMQ route, a reader for \
                 each disk buffer): give it at least {}",
                size(budget),
                size(least)
            ),
        );
    }
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

fn check_dead_letter(dl: &DeadLetterConfig, c: &mut Check<'_>) {
    if dl.path.is_some() && dl.topic.is_some() {
        c.field("topic", "set together with `path`: keep one");
    }
    if let Some(Err(e)) = dl.topic.as_deref().map(check_mqtt_topic) {
        c.field("topic", e);
    }
}
