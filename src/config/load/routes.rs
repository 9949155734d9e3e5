//! Reading `[[routes]]` and `[[downlinks]]` into routes. A route's keys go three ways: those
//! every route takes (`RouteKeys`); its source's, in its `source` table (or, for the default
//! broker, among its own keys, as routes always wrote `filters`), read by the kind of the
//! connection it reads; and the rest, read by the kind of the connection it delivers to. A key
//! that belongs to another kind is reported as such. A downlink's keys are the same three, its
//! `connection` being its source's and its sink the default broker.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::Loader;
use crate::config::model::*;
use crate::config::route::DOWNLINK_KEYS;
use crate::config::validate::{PartRoute, Parts};
use crate::connectors::mqtt::Mqtt;
use crate::connectors::{self, Connector, Kind, SinkSettings, SourceAt, SourceSettings, KINDS};
use crate::settings::{struct_fields, Value};

impl<'a> Loader<'a, '_> {
    /// A `[[routes]]` entry.
    pub(super) fn route(&mut self, label: &str, value: Value<'a>, parts: &mut Parts) {
        let span = value.span();
        // Remembered whole, so that problems with the kinds' keys are located too.
        self.reader.sources.remember(label, &value);
        let DeValue::Table(mut table) = value.into_inner() else {
            self.reader
                .problem(label, None, "must be a table", span.start);
            return;
        };
        let name = self.text_of(&table, "name").unwrap_or_default();
        let connection = self.text_of(&table, "connection");
        let sink_kind = self.kind_of(connection.as_deref(), parts);
        let nested = table.remove(&key("source"));
        let common = struct_fields::<RouteKeys>();
        let (common, mut rest) = split(table, |k| common.contains(&k));
        let keys = self.route_keys(label, common, span.clone());
        let (source, source_connection) = match nested {
            Some(nested) => self.nested_source(label, nested, &name, sink_kind, &mut rest, parts),
            None => {
                let own = self.default_broker_keys(label, sink_kind, &mut rest);
                let at = SourceAt {
                    connection: DEFAULT_BROKER,
                    route: &name,
                    nested: false,
                };
                let value = Spanned::new(span.clone(), DeValue::Table(own));
                let source = self.read_source(label, value, at, parts);
                (source, Some(DEFAULT_BROKER.to_owned()))
            }
        };
        let sink = self.route_sink(label, connection.as_deref(), rest, span, parts);
        self.push(
            parts,
            keys,
            Spelling::Route,
            source_connection,
            source,
            sink,
        );
    }

    /// A `[[downlinks]]` entry: a route from its `connection` (Kafka or RocketMQ) to the
    /// default broker.
    pub(super) fn downlink(&mut self, label: &str, value: Value<'a>, parts: &mut Parts) {
        let span = value.span();
        self.reader.sources.remember(label, &value);
        let DeValue::Table(mut table) = value.into_inner() else {
            self.reader
                .problem(label, None, "must be a table", span.start);
            return;
        };
        let name = self.text_of(&table, "name").unwrap_or_default();
        let source_connection = self.text_of(&table, "connection");
        table.remove(&key("connection"));
        let source_kind = self.kind_of(source_connection.as_deref(), parts);
        let sink_kind = default_broker_kind();
        let (common, rest) = split(table, |k| DOWNLINK_KEYS.contains(&k));
        let (sink, rest) = split(rest, |k| sink_kind.sink_keys().contains(&k));
        let source_keys = |k: &str| match source_kind {
            Some(kind) => kind.source_keys().contains(&k),
            None => KINDS.iter().any(|kind| kind.source_keys().contains(&k)),
        };
        let (source, rest) = split(rest, source_keys);
        for (k, _) in rest {
            let msg = match source_kind.filter(|_| takes_source_key(k.get_ref())) {
                Some(kind) => foreign_source_key(k.get_ref(), source_connection.as_deref(), kind),
                None => "unknown key".to_owned(),
            };
            self.reader
                .problem(label, Some(k.get_ref()), msg, k.span().start);
        }
        let keys = self
            .route_keys(label, common, span.clone())
            .map(|mut keys| {
                keys.connection = DEFAULT_BROKER.to_owned();
                keys
            });
        let source = source_connection.as_deref().and_then(|connection| {
            let at = SourceAt {
                connection,
                route: &name,
                nested: false,
            };
            let value = Spanned::new(span.clone(), DeValue::Table(source));
            self.read_source(label, value, at, parts)
        });
        let value = Spanned::new(span, DeValue::Table(sink));
        let sink = sink_kind.read_sink(&mut self.reader, label, value);
        self.push(
            parts,
            keys,
            Spelling::Downlink,
            source_connection,
            source,
            sink,
        );
    }

    fn push(
        &mut self,
        parts: &mut Parts,
        keys: Option<RouteKeys>,
        spelling: Spelling,
        source_connection: Option<String>,
        source: Option<SourceSettings>,
        sink: Option<SinkSettings>,
    ) {
        match keys {
            Some(keys) => parts.routes.push(PartRoute {
                keys,
                spelling,
                source_connection: source_connection.unwrap_or_default(),
                source,
                sink,
            }),
            None => parts.broken_routes += 1,
        }
    }

    /// The keys every route takes, its schema's path made relative to the file.
    fn route_keys(
        &mut self,
        label: &str,
        common: DeTable<'a>,
        span: Range<usize>,
    ) -> Option<RouteKeys> {
        let value = Spanned::new(span, DeValue::Table(common));
        let mut keys = self.reader.read::<RouteKeys>(label, value)?;
        crate::settings::resolve_relative(self.base, [&mut keys.schema]);
        Some(keys)
    }

    /// `key`'s text in `table`, its `${VAR}` references expanded.
    fn text_of(&self, table: &DeTable<'a>, name: &str) -> Option<String> {
        let value = table.get(&key(name))?.get_ref().as_str()?;
        self.reader.expanded(value)
    }

    /// The kind of connection `name`, when it is defined.
    fn kind_of(&self, name: Option<&str>, parts: &Parts) -> Option<&'static dyn Kind> {
        connectors::kind(parts.connections.get(name?)?.kind())
    }

    /// A route's `source` table: the connection it names (the default broker when it names
    /// none), and that kind's keys. Keys of the default broker's source left among the route's
    /// own keys belong in the table.
    fn nested_source(
        &mut self,
        label: &str,
        nested: Value<'a>,
        route: &str,
        sink_kind: Option<&'static dyn Kind>,
        rest: &mut DeTable<'a>,
        parts: &Parts,
    ) -> (Option<SourceSettings>, Option<String>) {
        let outside: Vec<_> = rest
            .keys()
            .filter(|k| {
                default_broker_kind()
                    .source_keys()
                    .contains(&k.get_ref().as_ref())
            })
            .filter(|k| sink_kind.is_none_or(|s| !s.sink_keys().contains(&k.get_ref().as_ref())))
            .cloned()
            .collect();
        for k in outside {
            rest.remove(&k);
            let msg = format!(
                "the route's `source` says what it reads: write `{k}` inside it, or remove it",
                k = k.get_ref()
            );
            self.reader
                .problem(label, Some(k.get_ref()), msg, k.span().start);
        }
        let span = nested.span();
        let DeValue::Table(mut table) = nested.into_inner() else {
            let msg = "must be a table, such as { connection = \"events\", topic = \"orders\" }";
            self.reader.problem(label, Some("source"), msg, span.start);
            return (None, None);
        };
        let connection = self.text_of(&table, "connection");
        table.remove(&key("connection"));
        let connection = connection.unwrap_or_else(|| DEFAULT_BROKER.to_owned());
        if let Some(kind) = self.kind_of(Some(&connection), parts) {
            let foreign: Vec<_> = table
                .keys()
                .filter(|k| !kind.source_keys().contains(&k.get_ref().as_ref()))
                .filter(|k| takes_source_key(k.get_ref()))
                .cloned()
                .collect();
            for k in foreign {
                table.remove(&k);
                let msg = foreign_source_key(k.get_ref(), Some(&connection), kind);
                let field = format!("source.{}", k.get_ref());
                self.reader
                    .problem(label, Some(&field), msg, k.span().start);
            }
        }
        let at = SourceAt {
            connection: &connection,
            route,
            nested: true,
        };
        let source = self.read_source(label, Spanned::new(span, DeValue::Table(table)), at, parts);
        (source, Some(connection))
    }

    /// A source's keys, read by the kind of the connection they read; when the connection is
    /// unknown, by a kind that takes them all, so that their own problems are not hidden.
    fn read_source(
        &mut self,
        label: &str,
        value: Value<'a>,
        at: SourceAt<'_>,
        parts: &Parts,
    ) -> Option<SourceSettings> {
        if let Some(kind) = self.kind_of(Some(at.connection), parts) {
            if !kind.readable() {
                return None;
            }
            return kind.read_source(&mut self.reader, label, value, at);
        }
        let DeValue::Table(table) = value.get_ref() else {
            return None;
        };
        let takes_all = |k: &&&dyn Kind| {
            k.readable()
                && table
                    .keys()
                    .all(|key| k.source_keys().contains(&key.get_ref().as_ref()))
        };
        if let Some(kind) = KINDS.iter().find(takes_all) {
            let _ = kind.read_source(&mut self.reader, label, value, at);
        }
        None
    }

    /// The keys of a route without a `source` that belong to the default broker's source:
    /// taken out of `rest`. One that the route's sink kind takes too is refused as ambiguous.
    fn default_broker_keys(
        &mut self,
        label: &str,
        sink_kind: Option<&'static dyn Kind>,
        rest: &mut DeTable<'a>,
    ) -> DeTable<'a> {
        let source_keys = default_broker_kind().source_keys();
        let mine: Vec<_> = rest
            .keys()
            .filter(|k| source_keys.contains(&k.get_ref().as_ref()))
            .cloned()
            .collect();
        let mut own = DeTable::new();
        for k in mine {
            let Some((k, v)) = rest.remove_entry(&k) else {
                continue;
            };
            let sink_takes_it =
                sink_kind.is_some_and(|s| s.sink_keys().contains(&k.get_ref().as_ref()));
            if sink_takes_it {
                let msg = format!(
                    "both the MQTT broker the route reads and its sink take `{k}`: write the \
                     source's in `source = {{ filters = [...], {k} = ... }}` and keep `{k}` here \
                     for the sink",
                    k = k.get_ref()
                );
                self.reader
                    .problem(label, Some(k.get_ref()), msg, k.span().start);
                continue;
            }
            own.insert(k, v);
        }
        own
    }

    /// A route's settings for the kind of the connection it delivers to. A key of another kind
    /// is reported as such; when the connection is unknown, the keys are still checked by a
    /// kind that takes them.
    fn route_sink(
        &mut self,
        label: &str,
        connection: Option<&str>,
        mut own: DeTable<'a>,
        span: Range<usize>,
        parts: &Parts,
    ) -> Option<SinkSettings> {
        let found = connection.and_then(|name| Some((name, parts.connections.get(name)?)));
        let Some((name, config)) = found else {
            self.check_orphan_keys(label, own, span);
            return None;
        };
        let kind = connectors::kind(config.kind())?;
        let foreign: Vec<_> = own
            .keys()
            .filter(|k| !kind.sink_keys().contains(&k.get_ref().as_ref()))
            .cloned()
            .collect();
        for key in foreign {
            own.remove(&key);
            let msg = foreign_key_message(key.get_ref(), name, kind);
            self.reader
                .problem(label, Some(key.get_ref()), msg, key.span().start);
        }
        kind.read_sink(
            &mut self.reader,
            label,
            Spanned::new(span, DeValue::Table(own)),
        )
    }

    /// Keys of a route whose connection is unknown: checked by the first kind that takes them
    /// all, so that their own problems are not hidden; a key no kind takes is unknown.
    fn check_orphan_keys(&mut self, label: &str, own: DeTable<'a>, span: Range<usize>) {
        if own.is_empty() {
            return;
        }
        let takes_all = |k: &&&dyn Kind| {
            own.keys()
                .all(|key| k.sink_keys().contains(&key.get_ref().as_ref()))
        };
        if let Some(kind) = KINDS.iter().find(takes_all) {
            let value = Spanned::new(span, DeValue::Table(own));
            let _ = kind.read_sink(&mut self.reader, label, value);
            return;
        }
        for key in own.keys() {
            let anywhere = KINDS
                .iter()
                .any(|k| k.sink_keys().contains(&key.get_ref().as_ref()));
            if !anywhere {
                self.reader
                    .problem(label, Some(key.get_ref()), "unknown key", key.span().start);
            }
        }
    }
}

/// A table's key, to look it up.
fn key(name: &str) -> Spanned<std::borrow::Cow<'static, str>> {
    Spanned::new(0..0, std::borrow::Cow::Owned(name.to_owned()))
}

/// `table` split in two: the entries whose keys `take` takes, and the others.
fn split<'a>(table: DeTable<'a>, take: impl Fn(&str) -> bool) -> (DeTable<'a>, DeTable<'a>) {
    let (mut taken, mut rest) = (DeTable::new(), DeTable::new());
    for (k, v) in table {
        match take(k.get_ref().as_ref()) {
            true => taken.insert(k, v),
            false => rest.insert(k, v),
        };
    }
    (taken, rest)
}

/// The kind of the default broker, `[mqtt]`.
fn default_broker_kind() -> &'static dyn Kind {
    connectors::kind(Mqtt::NAME).expect("the mqtt kind is registered")
}

/// Whether some kind's source takes `key`.
fn takes_source_key(key: &str) -> bool {
    KINDS.iter().any(|k| k.source_keys().contains(&key))
}

/// "`tags` is a setting of rocketmq sources, but connection "events" is a kafka connection".
fn foreign_source_key(key: &str, connection: Option<&str>, kind: &dyn Kind) -> String {
    let owners: Vec<&str> = KINDS
        .iter()
        .filter(|k| k.source_keys().contains(&key))
        .map(|k| k.name())
        .collect();
    let connection = connection.unwrap_or_default();
    format!(
        "a setting of {} sources, but connection \"{connection}\" is a {} connection ({} \
         sources take {})",
        owners.join(" and "),
        kind.name(),
        kind.name(),
        quoted(kind.source_keys())
    )
}

/// "`topic` is a kafka route setting, but connection "debug" is a file connection".
fn foreign_key_message(key: &str, connection: &str, kind: &dyn Kind) -> String {
    let owners: Vec<&str> = KINDS
        .iter()
        .filter(|k| k.sink_keys().contains(&key))
        .map(|k| k.name())
        .collect();
    if owners.is_empty() {
        return "unknown key".into();
    }
    let takes = match kind.sink_keys() {
        [] => format!("{} routes take no keys of their own", kind.name()),
        keys => format!("{} routes take {}", kind.name(), quoted(keys)),
    };
    format!(
        "a setting of {} routes, but connection \"{connection}\" is a {} connection ({takes})",
        owners.join(" and "),
        kind.name()
    )
}

fn quoted(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
