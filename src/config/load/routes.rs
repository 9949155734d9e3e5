//! Reading `[[routes]]`: the keys every route takes, then the rest by the kind of the route's
//! connection, which reports a key of another kind as such.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::Loader;
use crate::config::model::*;
use crate::config::validate::Parts;
use crate::connectors::{self, Kind, RouteSinkConfig, KINDS};
use crate::settings::struct_fields;
use crate::settings::Value;

impl<'a> Loader<'a, '_> {
    /// Reads the keys every route takes, then hands the rest to the connection's kind.
    pub(super) fn route(&mut self, label: &str, value: Value<'a>, parts: &mut Parts) {
        let span = value.span();
        // Remembered whole, so that problems with the kind's keys are located too.
        self.reader.sources.remember(label, &value);
        let DeValue::Table(table) = value.into_inner() else {
            self.reader
                .problem(label, None, "must be a table", span.start);
            return;
        };
        let connection = table
            .get(&Spanned::new(0..0, "connection".into()))
            .and_then(|c| c.get_ref().as_str())
            .and_then(|c| self.reader.expanded(c));
        let common_keys = struct_fields::<RouteConfig<()>>();
        let (mut common, mut own) = (DeTable::new(), DeTable::new());
        for (key, value) in table {
            match common_keys.contains(&key.get_ref().as_ref()) {
                true => common.insert(key, value),
                false => own.insert(key, value),
            };
        }
        let common_value = Spanned::new(span.clone(), DeValue::Table(common));
        let route = self.reader.read::<RouteConfig<()>>(label, common_value);
        let route = route.map(|mut r| {
            crate::settings::resolve_relative(self.base, [&mut r.schema]);
            r.schema_read = r.schema.as_ref().and_then(|p| std::fs::read(p).ok());
            r
        });
        let sink = self.route_sink(label, connection.as_deref(), own, span, parts);
        match route {
            Some(route) => parts.routes.push((route, sink)),
            None => parts.broken_routes += 1,
        }
    }

    /// A route's settings for its connection's kind. A key of another kind is reported as such;
    /// when the connection is unknown, the keys are still checked by a kind that takes them.
    fn route_sink(
        &mut self,
        label: &str,
        connection: Option<&str>,
        mut own: DeTable<'a>,
        span: std::ops::Range<usize>,
        parts: &Parts,
    ) -> Option<RouteSinkConfig> {
        let found = connection.and_then(|name| Some((name, parts.connections.get(name)?)));
        let Some((name, config)) = found else {
            self.check_orphan_keys(label, own, span);
            return None;
        };
        let kind = connectors::kind(config.kind())?;
        let foreign: Vec<_> = own
            .keys()
            .filter(|k| !kind.route_keys().contains(&k.get_ref().as_ref()))
            .cloned()
            .collect();
        for key in foreign {
            own.remove(&key);
            let msg = foreign_key_message(key.get_ref(), name, kind);
            self.reader
                .problem(label, Some(key.get_ref()), msg, key.span().start);
        }
        kind.read_route(
            &mut self.reader,
            label,
            Spanned::new(span, DeValue::Table(own)),
        )
    }

    /// Keys of a route whose connection is unknown: checked by the first kind that takes them
    /// all, so that their own problems are not hidden; a key no kind takes is unknown.
    fn check_orphan_keys(&mut self, label: &str, own: DeTable<'a>, span: std::ops::Range<usize>) {
        if own.is_empty() {
            return;
        }
        let takes_all = |k: &&&dyn Kind| {
            own.keys()
                .all(|key| k.route_keys().contains(&key.get_ref().as_ref()))
        };
        if let Some(kind) = KINDS.iter().find(takes_all) {
            let value = Spanned::new(span, DeValue::Table(own));
            let _ = kind.read_route(&mut self.reader, label, value);
            return;
        }
        for key in own.keys() {
            let anywhere = KINDS
                .iter()
                .any(|k| k.route_keys().contains(&key.get_ref().as_ref()));
            if !anywhere {
                self.reader
                    .problem(label, Some(key.get_ref()), "unknown key", key.span().start);
            }
        }
    }
}

/// "`topic` is a kafka route setting, but connection "debug" is a file connection".
fn foreign_key_message(key: &str, connection: &str, kind: &dyn Kind) -> String {
    let owners: Vec<&str> = KINDS
        .iter()
        .filter(|k| k.route_keys().contains(&key))
        .map(|k| k.name())
        .collect();
    if owners.is_empty() {
        return "unknown key".into();
    }
    let takes = match kind.route_keys() {
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
