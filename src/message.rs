//! The bridge's message: one MQTT PUBLISH with everything the broker told about it, plus the
//! bridge's own message id and receive time. Sinks render it (Kafka record, JSON line) from here.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::Publish;
use rumqttc::v5::mqttbytes::QoS;
use uuid::Uuid;

use crate::config::PublisherProperties;

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
    pub fn from_publish(publish: &Publish, names: &PublisherProperties) -> Self {
        let props = publish.properties.clone().unwrap_or_default();
        let properties = Properties {
            payload_format_indicator: props.payload_format_indicator,
            message_expiry_interval: props.message_expiry_interval,
            content_type: props.content_type,
            response_topic: props.response_topic,
            // Copied for the same reason as the payload (below).
            correlation_data: props.correlation_data.map(|c| Bytes::copy_from_slice(&c)),
            user_properties: props.user_properties,
        };
        let lookup = |name: &Option<String>| {
            let name = name.as_deref()?;
            first(&properties.user_properties, name).map(str::to_owned)
        };
        let publisher = Publisher {
            client_id: lookup(&names.client_id_property),
            username: lookup(&names.username_property),
            host: lookup(&names.host_property),
        };
        Message {
            id: Uuid::now_v7(),
            topic: String::from_utf8_lossy(&publish.topic).into_owned(),
            // A copy, not a slice: a slice would keep the whole read buffer it came in alive
            // (8 KiB or more) for as long as the message is in flight, which at a message per
            // read is most of the bridge's memory.
            payload: Bytes::copy_from_slice(&publish.payload),
            qos: qos_number(publish.qos),
            retain: publish.retain,
            dup: publish.dup,
            packet_id: publish.pkid,
            properties,
            timestamp_ms: now_ms(),
            publisher,
        }
    }

    /// The first user property called `name`.
    pub fn user_property(&self, name: &str) -> Option<&str> {
        first(&self.properties.user_properties, name)
    }

    /// Approximate memory held by the message, for byte metrics.
    pub fn size(&self) -> usize {
        self.topic.len() + self.payload.len()
    }
}

fn first<'a>(props: &'a [(String, String)], name: &str) -> Option<&'a str> {
    props
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub fn qos_number(qos: QoS) -> u8 {
    match qos {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => 1,
        QoS::ExactlyOnce => 2,
    }
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
        }
    }

    #[test]
    fn publisher_fields_come_from_configured_user_properties() {
        let mut publish = Publish::new("a/b", QoS::AtLeastOnce, "x", None);
        publish.properties = Some(rumqttc::v5::mqttbytes::v5::PublishProperties {
            user_properties: vec![
                ("cid".into(), "dev-1".into()),
                ("cid".into(), "dev-2".into()),
            ],
            ..Default::default()
        });
        let names = PublisherProperties {
            client_id_property: Some("cid".into()),
            ..Default::default()
        };
        let msg = Message::from_publish(&publish, &names);
        assert_eq!(msg.publisher.client_id.as_deref(), Some("dev-1"));
        assert_eq!(msg.publisher.username, None);
        assert_eq!(msg.properties.user_properties.len(), 2);
        assert_eq!(msg.qos, 1);
    }
}
