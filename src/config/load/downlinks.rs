//! Reading `[[downlinks]]` entries into routes: a downlink's `connection` names its source (a
//! Kafka or RocketMQ connection, whose kind reads the source keys among the downlink's own), and
//! its sink is the default broker, whose kind reads the MQTT keys.

use toml::de::DeValue;
use toml::Spanned;

use super::routes::{default_broker_kind, key, push, split, Read};
use super::sources::{foreign_source_key, takes_source_key};
use super::Loader;
use crate::config::model::*;
use crate::config::route::DOWNLINK_KEYS;
use crate::config::validate::Parts;
use crate::connectors::{SourceAt, KINDS};
use crate::settings::Value;

impl<'a> Loader<'a, '_> {
    /// A `[[downlinks]]` entry: a route from its `connection` (Kafka or RocketMQ) to the
    /// default broker.
    pub(super) fn downlink(&mut self, label: &str, value: Value<'a>, parts: &mut Parts) {
        let Some((mut table, span, name)) = self.entry(label, value) else {
            return;
        };
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
        let read = Read {
            keys,
            spelling: Spelling::Downlink,
            source_connection,
            source,
            sink,
            dead_letter: None,
        };
        push(parts, read);
    }
}
