//! The Kafka record headers of a message (the README's header table), and the names under which
//! they carry MQTT's fields (`KAFKA`), which a route to MQTT maps back. Values are UTF-8 text:
//! numbers in decimal, booleans `true`/`false`, binary correlation data in base64. The first four
//! names match the Kafka Connect MQTT source connector's. A record read from Kafka or RocketMQ
//! keeps its own headers (or properties) as they are: they are already that system's metadata.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use rdkafka::message::{Header, OwnedHeaders};

use crate::message::{FieldNames, Message, System};

/// Kafka as a system records are read from.
pub static KAFKA: System = System {
    name: "kafka",
    fields: Some(FieldNames {
        content_type: CONTENT_TYPE,
        response_topic: RESPONSE_TOPIC,
        correlation_data: CORRELATION_DATA,
        payload_format: "mqtt.payload.format.indicator",
        expiry: "mqtt.message.expiry.interval",
        prefix: "mqtt.",
        renamed: None,
    }),
    ckafka_event: true,
};

const CONTENT_TYPE: &str = "mqtt.content.type";
const RESPONSE_TOPIC: &str = "mqtt.response.topic";
const CORRELATION_DATA: &str = "mqtt.correlation.data";

pub fn headers(msg: &Message) -> OwnedHeaders {
    let p = &msg.properties;
    let mut h = OwnedHeaders::new_with_capacity(12 + p.user_properties.len());
    if msg.origin.is_some() {
        for (key, value) in &p.user_properties {
            h = put(h, key, value);
        }
        return h;
    }
    h = put(h, "mqtt.topic", &msg.topic);
    h = put(h, "mqtt.qos", itoa::Buffer::new().format(msg.qos));
    h = put(h, "mqtt.retained", bool_str(msg.retain));
    h = put(h, "mqtt.duplicate", bool_str(msg.dup));
    h = put(
        h,
        "mqtt.packet.id",
        itoa::Buffer::new().format(msg.packet_id),
    );
    h = put(
        h,
        "mqtt.message.id",
        msg.id
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    h = put(
        h,
        "mqtt.timestamp",
        itoa::Buffer::new().format(msg.timestamp_ms),
    );
    let who = &msg.publisher;
    let optional = [
        (CONTENT_TYPE, p.content_type.as_deref().map(Into::into)),
        (RESPONSE_TOPIC, p.response_topic.as_deref().map(Into::into)),
        (
            CORRELATION_DATA,
            p.correlation_data.as_ref().map(|c| BASE64.encode(c).into()),
        ),
        (
            "mqtt.publisher.client.id",
            who.client_id.as_deref().map(Into::into),
        ),
        (
            "mqtt.publisher.username",
            who.username.as_deref().map(Into::into),
        ),
        ("mqtt.publisher.host", who.host.as_deref().map(Into::into)),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            let value: std::borrow::Cow<str> = value;
            h = put(h, key, &value);
        }
    }
    for (key, value) in &p.user_properties {
        h = put(h, key, value);
    }
    h
}

/// The message a record of `headers` and `payload` carries, as `headers` wrote it: MQTT's
/// fields from their `mqtt.*` names, the other headers as user properties in their order. A
/// record without `mqtt.topic` (one the bridge had read from Kafka or RocketMQ) keeps every
/// header as a user property, and an empty topic.
pub fn message(headers: Vec<(String, String)>, payload: bytes::Bytes) -> Message {
    let mut msg = Message::record(
        crate::message::Origin {
            system: &KAFKA,
            partition: crate::message::Partition {
                topic: String::new(),
                broker: String::new(),
                id: 0,
            },
            offset: -1,
            key: None,
            tag: None,
        },
        Vec::new(),
        payload,
    );
    msg.origin = None;
    msg.topic = String::new();
    let mqtt = headers.iter().any(|(k, _)| k == "mqtt.topic");
    for (key, value) in headers {
        let p = &mut msg.properties;
        match key.as_str() {
            "mqtt.topic" if mqtt => msg.topic = value,
            "mqtt.qos" if mqtt => msg.qos = value.parse().unwrap_or(1),
            "mqtt.retained" if mqtt => msg.retain = value == "true",
            "mqtt.duplicate" if mqtt => msg.dup = value == "true",
            "mqtt.packet.id" if mqtt => msg.packet_id = value.parse().unwrap_or(0),
            "mqtt.message.id" if mqtt => msg.id = value.parse().unwrap_or(msg.id),
            "mqtt.timestamp" if mqtt => {
                msg.timestamp_ms = value.parse().unwrap_or(msg.timestamp_ms)
            }
            CONTENT_TYPE if mqtt => p.content_type = Some(value),
            RESPONSE_TOPIC if mqtt => p.response_topic = Some(value),
            CORRELATION_DATA if mqtt => {
                p.correlation_data = BASE64.decode(value).ok().map(Into::into)
            }
            "mqtt.publisher.client.id" if mqtt => msg.publisher.client_id = Some(value),
            "mqtt.publisher.username" if mqtt => msg.publisher.username = Some(value),
            "mqtt.publisher.host" if mqtt => msg.publisher.host = Some(value),
            _ => p.user_properties.push((key, value)),
        }
    }
    msg
}

fn put(h: OwnedHeaders, key: &str, value: &str) -> OwnedHeaders {
    h.insert(Header {
        key,
        value: Some(value),
    })
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::tests::sample;
    use rdkafka::message::Headers;

    #[test]
    fn a_record_of_an_mqtt_message_reads_back_as_it() {
        let mut msg = sample("a/b");
        msg.properties.correlation_data = Some(bytes::Bytes::from_static(b"\x01\x02"));
        let h = headers(&msg);
        let pairs: Vec<(String, String)> = h
            .iter()
            .map(|h| {
                (
                    h.key.to_owned(),
                    String::from_utf8_lossy(h.value.unwrap()).into_owned(),
                )
            })
            .collect();
        assert_eq!(message(pairs, msg.payload.clone()), msg);
    }

    #[test]
    fn headers_in_documented_order_with_repeats() {
        let mut msg = sample("city/x/vehicles/1");
        msg.properties.correlation_data = Some(bytes::Bytes::from_static(&[1, 2, 255]));
        let h = headers(&msg);
        let pairs: Vec<(String, String)> = h
            .iter()
            .map(|h| {
                (
                    h.key.to_owned(),
                    String::from_utf8(h.value.unwrap().to_vec()).unwrap(),
                )
            })
            .collect();
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "mqtt.topic",
                "mqtt.qos",
                "mqtt.retained",
                "mqtt.duplicate",
                "mqtt.packet.id",
                "mqtt.message.id",
                "mqtt.timestamp",
                "mqtt.content.type",
                "mqtt.correlation.data",
                "mqtt.publisher.client.id",
                "plate",
                "lane",
                "plate",
            ]
        );
        assert_eq!(pairs[1].1, "1");
        assert_eq!(pairs[2].1, "false");
        assert_eq!(pairs[4].1, "7");
        assert_eq!(pairs[6].1, "1700000000000");
        assert_eq!(pairs[8].1, "AQL/");
        assert_eq!(pairs[12].1, "second");
    }
}
