//! The connection kinds the bridge knows: one line each (`KINDS`), and what the config loader
//! asks of a kind (`Kind`: its name, the keys it takes, and reading its values bound to it).
//! Adding a kind is a folder under `connectors/` that implements `Connector`, and a line here.

use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::bound::{ConnectionConfig, SinkSettings, SourceSettings, Typed};
use super::kind::{Connector, SourceAt};
use super::{exec, file, http, kafka, mqtt, rocketmq, scf};
use crate::settings::{struct_fields, SectionReader, Value};

pub static KINDS: &[&dyn Kind] = &[
    &Registered::<kafka::Kafka>::new(),
    &Registered::<file::File>::new(),
    &Registered::<http::Http>::new(),
    &Registered::<exec::Exec>::new(),
    &Registered::<scf::Scf>::new(),
    &Registered::<rocketmq::Rocketmq>::new(),
    &Registered::<mqtt::Mqtt>::new(),
];

/// A kind as the config loader sees it.
pub trait Kind: Sync {
    fn name(&self) -> &'static str;
    /// What it offers: "sink", or "sink and source".
    fn offers(&self) -> &'static str;
    fn readable(&self) -> bool;
    /// Whether the devices are on its side (`Connector::FACES_DEVICES`).
    fn faces_devices(&self) -> bool;
    /// The keys a route takes for this kind as its sink.
    fn sink_keys(&self) -> &'static [&'static str];
    /// The keys of a route's `source` on this kind (none where it cannot be read).
    fn source_keys(&self) -> &'static [&'static str];
    fn read_connection<'a>(
        &self,
        reader: &mut SectionReader<'a, '_>,
        label: &str,
        value: Value<'a>,
        base: &Path,
    ) -> Option<ConnectionConfig>;
    fn read_sink<'a>(
        &self,
        reader: &mut SectionReader<'a, '_>,
        label: &str,
        value: Value<'a>,
    ) -> Option<SinkSettings>;
    /// A route's source on `connection`, its defaults completed for route `route`. `nested`:
    /// `value` is the route's `source` table (its problems are located under `source.`), else
    /// keys of the route itself.
    fn read_source<'a>(
        &self,
        reader: &mut SectionReader<'a, '_>,
        label: &str,
        value: Value<'a>,
        source: SourceAt<'_>,
    ) -> Option<SourceSettings>;
}

/// A route's `source` table, read on its own but located within the route.
#[derive(serde::Deserialize)]
#[serde(bound = "T: DeserializeOwned")]
struct Nested<T> {
    source: T,
}

/// The registry's entry for kind `K`.
pub struct Registered<K>(PhantomData<fn() -> K>);

impl<K> Registered<K> {
    pub const fn new() -> Self {
        Registered(PhantomData)
    }
}

impl<K: Connector> Kind for Registered<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn offers(&self) -> &'static str {
        match K::READABLE {
            true => "sink and source",
            false => "sink",
        }
    }

    fn readable(&self) -> bool {
        K::READABLE
    }

    fn faces_devices(&self) -> bool {
        K::FACES_DEVICES
    }

    fn sink_keys(&self) -> &'static [&'static str] {
        struct_fields::<K::SinkConfig>()
    }

    fn source_keys(&self) -> &'static [&'static str] {
        match K::READABLE {
            true => struct_fields::<K::SourceConfig>(),
            false => &[],
        }
    }

    fn read_connection<'a>(
        &self,
        reader: &mut SectionReader<'a, '_>,
        label: &str,
        value: Value<'a>,
        base: &Path,
    ) -> Option<ConnectionConfig> {
        let mut config = reader.read::<K::ConnectionConfig>(label, value)?;
        K::resolve_paths(&mut config, base);
        Some(ConnectionConfig(Arc::new(Typed::<K, _>::new(config))))
    }

    fn read_sink<'a>(
        &self,
        reader: &mut SectionReader<'a, '_>,
        label: &str,
        value: Value<'a>,
    ) -> Option<SinkSettings> {
        let config = reader.read::<K::SinkConfig>(label, value)?;
        Some(SinkSettings(Arc::new(Typed::<K, _>::new(config))))
    }

    fn read_source<'a>(
        &self,
        reader: &mut SectionReader<'a, '_>,
        label: &str,
        value: Value<'a>,
        at: SourceAt<'_>,
    ) -> Option<SourceSettings> {
        let mut config = match at.nested {
            false => reader.read::<K::SourceConfig>(label, value)?,
            true => {
                let span = value.span();
                let mut table = toml::de::DeTable::new();
                table.insert(toml::Spanned::new(span.clone(), "source".into()), value);
                let wrapped = toml::Spanned::new(span, toml::de::DeValue::Table(table));
                reader
                    .read::<Nested<K::SourceConfig>>(label, wrapped)?
                    .source
            }
        };
        K::complete_source(&mut config, at.route);
        Some(SourceSettings {
            connection: at.connection.to_owned(),
            settings: Arc::new(Typed::<K, K::SourceConfig>::new(config)),
        })
    }
}

/// The systems messages are read from besides MQTT, as their connectors describe them.
pub static SYSTEMS: &[&crate::message::System] = &[&kafka::KAFKA, &rocketmq::ROCKETMQ];

/// The system called `name` (a stored message names the system it was read from).
pub fn system(name: &str) -> Option<&'static crate::message::System> {
    SYSTEMS.iter().copied().find(|s| s.name == name)
}

/// The kind called `name`.
pub fn kind(name: &str) -> Option<&'static dyn Kind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_knows_the_keys_it_takes_as_a_sink() {
        let keys = |name| kind(name).map(|k| k.sink_keys());
        assert_eq!(keys("kafka"), Some(&["topic", "key"][..]));
        assert_eq!(keys("rocketmq"), Some(&["topic", "tag", "keys"][..]));
        assert_eq!(keys("file"), Some(&[][..]));
        assert_eq!(keys("http"), Some(&["base64_payload"][..]));
        assert_eq!(keys("exec"), Some(&["base64_payload"][..]));
        let scf = [
            "function",
            "namespace",
            "qualifier",
            "invocation",
            "base64_payload",
        ];
        assert_eq!(keys("scf"), Some(&scf[..]));
        let mqtt = [
            "mqtt_topic",
            "qos",
            "retain",
            "message_expiry",
            "mqtt_connections",
        ];
        assert_eq!(keys("mqtt"), Some(&mqtt[..]));
        assert!(kind("s3").is_none());
    }

    #[test]
    fn each_readable_kind_knows_the_keys_of_its_source() {
        let keys = |name| kind(name).map(|k| k.source_keys());
        assert_eq!(keys("kafka"), Some(&["topic", "group", "start"][..]));
        let rocketmq = ["topic", "tags", "group", "start"];
        assert_eq!(keys("rocketmq"), Some(&rocketmq[..]));
        let mqtt = [
            "filters",
            "share_group",
            "consumers",
            "qos",
            "shared_connections",
        ];
        assert_eq!(keys("mqtt"), Some(&mqtt[..]));
        assert_eq!(keys("http"), Some(&[][..]), "a sink only");
    }

    #[test]
    fn each_kind_says_what_it_offers() {
        let offers: Vec<(&str, &str)> = KINDS.iter().map(|k| (k.name(), k.offers())).collect();
        assert_eq!(
            offers,
            [
                ("kafka", "sink and source"),
                ("file", "sink"),
                ("http", "sink"),
                ("exec", "sink"),
                ("scf", "sink"),
                ("rocketmq", "sink and source"),
                ("mqtt", "sink and source"),
            ]
        );
    }
}
