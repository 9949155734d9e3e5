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
use crate::config::validate::{PartRoute, Parts};
use crate::connectors::mqtt::Mqtt;
use crate::connectors::{self, Connector, Kind, SinkSettings, SourceAt, SourceSettings, KINDS};
use crate::settings::{struct_fields, Value};

/// A `[[routes]]` or `[[downlinks]]` entry's table, its span and its name.
pub(super) type Entry<'a> = (DeTable<'a>, Range<usize>, String);

/// What was read of a route.
pub(super) struct Read {
    pub(super) keys: Option<RouteKeys>,
    pub(super) spelling: Spelling,
    pub(super) source_connection: Option<String>,
    pub(super) source: Option<SourceSettings>,
    pub(super) sink: Option<SinkSettings>,
    pub(super) dead_letter: Option<(String, Option<SinkSettings>)>,
}

impl<'a> Loader<'a, '_> {
    /// An entry of `[[routes]]` or `[[downlinks]]`: remembered whole, so that problems with
    /// the kinds' keys are located too; `None` when it is not a table.
    pub(super) fn entry(&mut self, label: &str, value: Value<'a>) -> Option<Entry<'a>> {
        let span = value.span();
        self.reader.sources.remember(label, &value);
        let DeValue::Table(table) = value.into_inner() else {
            self.reader
                .problem(label, None, "must be a table", span.start);
            return None;
        };
        let name = self.text_of(&table, "name").unwrap_or_default();
        Some((table, span, name))
    }

    /// A `[[routes]]` entry.
    pub(super) fn route(&mut self, label: &str, value: Value<'a>, parts: &mut Parts) {
        let Some((mut table, span, name)) = self.entry(label, value) else {
            return;
        };
        let connection = self.text_of(&table, "connection");
        let sink_kind = self.kind_of(connection.as_deref(), parts);
        let nested = table.remove(&key("source"));
        let dead_letter = table.remove(&key("dead_letter"));
        let dead_letter =
            dead_letter.and_then(|d| self.dead_letter_sink(label, "dead_letter", d, parts));
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
        let read = Read {
            keys,
            spelling: Spelling::Route,
            source_connection,
            source,
            sink,
            dead_letter,
        };
        push(parts, read);
    }

    /// The keys every route takes, its schema's path made relative to the file.
    pub(super) fn route_keys(
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
    pub(super) fn text_of(&self, table: &DeTable<'a>, name: &str) -> Option<String> {
        let value = table.get(&key(name))?.get_ref().as_str()?;
        self.reader.expanded(value)
    }

    /// The kind of connection `name`, when it is defined.
    pub(super) fn kind_of(&self, name: Option<&str>, parts: &Parts) -> Option<&'static dyn Kind> {
        connectors::kind(parts.connections.get(name?)?.kind())
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
        self.drop_foreign_sink_keys(label, "", &mut own, name, kind);
        kind.read_sink(
            &mut self.reader,
            label,
            Spanned::new(span, DeValue::Table(own)),
        )
    }

    /// A `dead_letter = { connection = "NAME", ... }`: the connection, and the other keys read
    /// as that connection's kind's sink settings (`None` when they cannot be). `at` is where
    /// the table stands: `dead_letter` in a route, "" for `[dead_letter]`.
    pub(super) fn dead_letter_sink(
        &mut self,
        label: &str,
        at: &str,
        value: Value<'a>,
        parts: &Parts,
    ) -> Option<(String, Option<SinkSettings>)> {
        let span = value.span();
        let field = Some(at).filter(|a| !a.is_empty());
        let DeValue::Table(mut table) = value.into_inner() else {
            let msg =
                "must be a table, such as { connection = \"kafka\", topic = \"dead-letters\" }";
            self.reader.problem(label, field, msg, span.start);
            return None;
        };
        let Some(connection) = self.text_of(&table, "connection") else {
            let msg = "names no `connection`: write the connection to send dead letters to";
            self.reader.problem(label, field, msg, span.start);
            return None;
        };
        table.remove(&key("connection"));
        let Some(kind) = self.kind_of(Some(&connection), parts) else {
            return Some((connection, None));
        };
        let prefix = field.map(|a| format!("{a}.")).unwrap_or_default();
        self.drop_foreign_sink_keys(label, &prefix, &mut table, &connection, kind);
        let sink = kind.read_sink(
            &mut self.reader,
            label,
            Spanned::new(span, DeValue::Table(table)),
        );
        Some((connection, sink))
    }

    /// Takes out of `table` (the keys at `prefix`) those `kind` does not take as a sink,
    /// reporting each with the kind it belongs to.
    fn drop_foreign_sink_keys(
        &mut self,
        label: &str,
        prefix: &str,
        table: &mut DeTable<'a>,
        connection: &str,
        kind: &dyn Kind,
    ) {
        let foreign: Vec<_> = table
            .keys()
            .filter(|k| !kind.sink_keys().contains(&k.get_ref().as_ref()))
            .cloned()
            .collect();
        for k in foreign {
            table.remove(&k);
            let msg = foreign_key_message(k.get_ref(), connection, kind);
            let field = format!("{prefix}{}", k.get_ref());
            self.reader
                .problem(label, Some(&field), msg, k.span().start);
        }
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

/// The route `read` makes, or one more that could not be read.
pub(super) fn push(parts: &mut Parts, read: Read) {
    match read.keys {
        Some(keys) => parts.routes.push(PartRoute {
            keys,
            spelling: read.spelling,
            source_connection: read.source_connection.unwrap_or_default(),
            source: read.source,
            sink: read.sink,
            dead_letter: read.dead_letter,
        }),
        None => parts.broken_routes += 1,
    }
}

/// A table's key, to look it up.
pub(super) fn key(name: &str) -> Spanned<std::borrow::Cow<'static, str>> {
    Spanned::new(0..0, std::borrow::Cow::Owned(name.to_owned()))
}

/// `table` split in two: the entries whose keys `take` takes, and the others.
pub(super) fn split<'a>(
    table: DeTable<'a>,
    take: impl Fn(&str) -> bool,
) -> (DeTable<'a>, DeTable<'a>) {
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
pub(super) fn default_broker_kind() -> &'static dyn Kind {
    connectors::kind(Mqtt::NAME).expect("the mqtt kind is registered")
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

pub(super) fn quoted(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
