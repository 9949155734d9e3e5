//! Reading a route's source: its `source` table (the connection it reads and that kind's
//! keys), or the default broker's keys among the route's own; a key of another kind's source is
//! reported as such, and keys on a connection that is not defined are still checked by a kind
//! that takes them.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::routes::{default_broker_kind, key, quoted};
use super::Loader;
use crate::config::model::*;
use crate::config::validate::Parts;
use crate::connectors::{Kind, SourceAt, SourceSettings, KINDS};
use crate::settings::Value;

impl<'a> Loader<'a, '_> {
    /// A route's `source` table: the connection it names (the default broker when it names
    /// none), and that kind's keys. Keys of the default broker's source left among the route's
    /// own keys belong in the table.
    pub(super) fn nested_source(
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
    pub(super) fn read_source(
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
    pub(super) fn default_broker_keys(
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
}

/// Whether some kind's source takes `key`.
pub(super) fn takes_source_key(key: &str) -> bool {
    KINDS.iter().any(|k| k.source_keys().contains(&key))
}

/// "`tags` is a setting of rocketmq sources, but connection "events" is a kafka connection".
pub(super) fn foreign_source_key(key: &str, connection: Option<&str>, kind: &dyn Kind) -> String {
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
