//! The bridge's message, as sources fill it and sinks render it (Kafka record, JSON line): the
//! topic, payload and MQTT v5 properties, the delivery flags, who published it where known, and
//! the bridge's own message id and receive time. It depends on no client library.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Unique, time-ordered (UUIDv7).
    pub id: Uuid,
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    pub packet_id: u16,
    pub properties: Properties,
    /// When the bridge received it, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    pub publisher: Publisher,
    /// Where it was read when not from MQTT: a Kafka record or a RocketMQ message.
    pub origin: Option<Box<Origin>>,
    /// Where a rule (`transform`) sent it, over the route's templates.
    pub destination: Option<Box<Destination>>,
}

/// What a route's `transform` set for where a message goes, in place of what the route's
/// templates would render: a sink takes what applies to it (Kafka: topic and key; RocketMQ:
/// topic, tag and key; MQTT: topic).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Destination {
    pub topic: Option<String>,
    pub key: Option<String>,
    pub tag: Option<String>,
}

/// Where a message read from Kafka or RocketMQ sat, and what it carried besides its topic,
/// payload and headers (which are the message's user properties).
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub system: &'static System,
    pub partition: Partition,
    pub offset: i64,
    /// The Kafka record key, or the RocketMQ message's keys.
    pub key: Option<String>,
    /// The RocketMQ tag.
    pub tag: Option<String>,
}

/// A system messages are read from besides MQTT, as its connector describes it (a `static` of
/// its folder): its name, and how it names MQTT's own fields in the metadata a route wrote
/// there, so that a sink to MQTT maps them back.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct System {
    pub name: &'static str,
    /// `None`: the system carries no MQTT fields of the bridge's.
    pub fields: Option<FieldNames>,
    /// A function receives its records in the shape of Tencent Cloud's CKafka trigger.
    pub ckafka_event: bool,
}

/// The names under which a route writes MQTT's fields into a system's metadata.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FieldNames {
    pub content_type: &'static str,
    pub response_topic: &'static str,
    pub correlation_data: &'static str,
    pub payload_format: &'static str,
    pub expiry: &'static str,
    /// The bridge's own names start so; a sink to MQTT drops the other names it does not map.
    pub prefix: &'static str,
    /// A user property the route had to rename is this prefix + its name.
    pub renamed: Option<&'static str>,
}

impl FieldNames {
    /// The MQTT user property name for a metadata name, or none for the bridge's own names.
    pub fn user_name<'a>(&self, name: &'a str) -> Option<&'a str> {
        if let Some(original) = self.renamed.and_then(|r| name.strip_prefix(r)) {
            return Some(original);
        }
        (!name.starts_with(self.prefix)).then_some(name)
    }
}

/// Where a message sits in its source: a Kafka partition or a RocketMQ queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    pub topic: String,
    /// The RocketMQ broker holding the queue; empty for Kafka.
    pub broker: String,
    pub id: i32,
}

/// MQTT v5 PUBLISH properties.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Properties {
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    /// In the order received; names may repeat.
    pub user_properties: Vec<(String, String)>,
}

/// Who published the message, where the broker tells it (through user properties).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Publisher {
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub host: Option<String>,
}

impl Message {
    /// The first user property called `name`.
    pub fn user_property(&self, name: &str) -> Option<&str> {
        first(&self.properties.user_properties, name)
    }

    /// Approximate memory held by the message, for byte metrics.
    pub fn size(&self) -> usize {
        self.topic.len() + self.payload.len()
    }

    /// A message read from `partition` at `offset` of a Kafka or RocketMQ topic, its headers
    /// (Kafka) or user properties (RocketMQ) as user properties, received now.
    pub fn record(origin: Origin, headers: Vec<(String, String)>, payload: Bytes) -> Self {
        Message {
            id: Uuid::now_v7(),
            topic: origin.partition.topic.clone(),
            payload,
            qos: 1,
            retain: false,
            dup: false,
            packet_id: 0,
            properties: Properties {
                user_properties: headers,
                ..Default::default()
            },
            timestamp_ms: now_ms(),
            publisher: Publisher::default(),
            origin: Some(Box::new(origin)),
            destination: None,
        }
    }

    /// What an ordered route keeps the order of: its partition or queue for a message read
    /// from Kafka or RocketMQ, else its topic (hashed).
    pub fn order_key(&self) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hasher = BuildHasherDefault::<DefaultHasher>::default();
        match &self.origin {
            Some(origin) => hasher.hash_one(&origin.partition),
            None => hasher.hash_one(&self.topic),
        }
    }

    /// The topic a rule set for it, if one did.
    pub fn to_topic(&self) -> Option<&str> {
        self.destination.as_ref()?.topic.as_deref()
    }

    /// The record key (Kafka) or keys (RocketMQ) a rule set for it, if one did.
    pub fn to_key(&self) -> Option<&str> {
        self.destination.as_ref()?.key.as_deref()
    }

    /// The RocketMQ tag a rule set for it, if one did.
    pub fn to_tag(&self) -> Option<&str> {
        self.destination.as_ref()?.tag.as_deref()
    }

    /// The message as the dead-letter path shows it: one read from Kafka or RocketMQ has the
    /// topic `{system}:{topic}` and where it was read among its user properties
    /// (`source.partition`, `source.broker`, `source.offset`, `source.key`, `source.tag`).
    pub fn as_dead_letter(&self) -> std::borrow::Cow<'_, Message> {
        let Some(o) = &self.origin else {
            return std::borrow::Cow::Borrowed(self);
        };
        let mut m = self.clone();
        m.topic = format!("{}:{}", o.system.name, self.topic);
        let user = &mut m.properties.user_properties;
        user.push(("source.partition".into(), o.partition.id.to_string()));
        if !o.partition.broker.is_empty() {
            user.push(("source.broker".into(), o.partition.broker.clone()));
        }
        user.push(("source.offset".into(), o.offset.to_string()));
        user.extend(o.key.iter().map(|k| ("source.key".into(), k.clone())));
        user.extend(o.tag.iter().map(|t| ("source.tag".into(), t.clone())));
        std::borrow::Cow::Owned(m)
    }
}

fn first<'a>(props: &'a [(String, String)], name: &str) -> Option<&'a str> {
    props
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(topic: &str) -> Message {
        Message {
            id: Uuid::now_v7(),
            topic: topic.to_owned(),
            payload: Bytes::from_static(b"{\"speed\":42}"),
            qos: 1,
            retain: false,
            dup: false,
            packet_id: 7,
            properties: Properties {
                content_type: Some("application/json".into()),
                user_properties: vec![
                    ("plate".into(), "B-AB-123".into()),
                    ("lane".into(), "2".into()),
                    ("plate".into(), "second".into()),
                ],
                ..Default::default()
            },
            timestamp_ms: 1_700_000_000_000,
            publisher: Publisher {
                client_id: Some("car-7".into()),
                ..Default::default()
            },
            origin: None,
            destination: None,
        }
    }

    /// Any message: any topic, payload bytes, properties and publisher (property tests).
    pub(crate) fn any_message() -> impl proptest::strategy::Strategy<Value = Message> {
        use proptest::prelude::*;
        use proptest::{collection::vec, option::of};
        let text = || any::<String>();
        let head = (
            text(),
            vec(any::<u8>(), 0..256),
            0u8..=2,
            any::<bool>(),
            any::<bool>(),
            any::<u16>(),
            any::<u64>(),
        );
        let properties = (
            of(any::<u8>()),
            of(any::<u32>()),
            of(text()),
            of(text()),
            of(vec(any::<u8>(), 0..64)),
            vec((text(), text()), 0..8),
        )
            .prop_map(
                |(pfi, expiry, content_type, response_topic, correlation, user)| Properties {
                    payload_format_indicator: pfi,
                    message_expiry_interval: expiry,
                    content_type,
                    response_topic,
                    correlation_data: correlation.map(Bytes::from),
                    user_properties: user,
                },
            );
        let publisher = (of(text()), of(text()), of(text())).prop_map(|(c, u, h)| Publisher {
            client_id: c,
            username: u,
            host: h,
        });
        (head, properties, publisher).prop_map(
            |((topic, payload, qos, retain, dup, packet_id, ts), properties, publisher)| Message {
                id: Uuid::now_v7(),
                topic,
                payload: Bytes::from(payload),
                qos,
                retain,
                dup,
                packet_id,
                properties,
                timestamp_ms: ts,
                publisher,
                origin: None,
                destination: None,
            },
        )
    }
}
