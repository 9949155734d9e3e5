//! The JSON shape of a message, defined once: the `file` sink writes it as one line per message,
//! the dead-letter path wraps it, and function events (`event.rs`) carry it. Field names follow the
//! Kafka headers (`mqtt.packet.id` is `packet_id` here).

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Serialize, Serializer};
use uuid::Uuid;

use crate::message::Message;

#[derive(Debug, Serialize)]
pub struct Record<'a> {
    #[serde(serialize_with = "hyphenated")]
    pub message_id: Uuid,
    /// Milliseconds since the Unix epoch, when the bridge received the message.
    pub timestamp: u64,
    pub topic: &'a str,
    pub qos: u8,
    pub retained: bool,
    pub duplicate: bool,
    pub packet_id: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_topic: Option<&'a str>,
    /// Base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_format_indicator: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_expiry_interval: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher_client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher_username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher_host: Option<&'a str>,
    /// `[name, value]` pairs in the order received; names may repeat.
    pub user_properties: &'a [(String, String)],
    pub payload: Cow<'a, str>,
    /// "utf8" when `payload` is the text itself, "base64" when the payload was binary.
    pub payload_encoding: &'static str,
}

impl<'a> Record<'a> {
    pub fn new(msg: &'a Message) -> Self {
        Self::encoded(msg, false)
    }

    /// The record with its payload in base64 always (`base64` true), or only when it is not
    /// valid UTF-8.
    pub fn encoded(msg: &'a Message, base64: bool) -> Self {
        let (payload, payload_encoding) = payload_text(&msg.payload, base64);
        let p = &msg.properties;
        Record {
            message_id: msg.id,
            timestamp: msg.timestamp_ms,
            topic: &msg.topic,
            qos: msg.qos,
            retained: msg.retain,
            duplicate: msg.dup,
            packet_id: msg.packet_id,
            content_type: p.content_type.as_deref(),
            response_topic: p.response_topic.as_deref(),
            correlation_data: p.correlation_data.as_ref().map(|c| BASE64.encode(c)),
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            publisher_client_id: msg.publisher.client_id.as_deref(),
            publisher_username: msg.publisher.username.as_deref(),
            publisher_host: msg.publisher.host.as_deref(),
            user_properties: &p.user_properties,
            payload,
            payload_encoding,
        }
    }

    /// Appends the record and a newline to `out`.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        // Serializing plain strings and numbers into a Vec cannot fail.
        serde_json::to_writer(&mut *out, self).expect("record serializes");
        out.push(b'\n');
    }
}

/// A payload as JSON text and its encoding: "utf8" (the text itself) when it is valid UTF-8
/// and `base64` is off, else "base64".
pub fn payload_text(payload: &[u8], base64: bool) -> (Cow<'_, str>, &'static str) {
    let text = match base64 {
        true => None,
        false => std::str::from_utf8(payload).ok(),
    };
    match text {
        Some(text) => (Cow::Borrowed(text), "utf8"),
        None => (Cow::Owned(BASE64.encode(payload)), "base64"),
    }
}

/// The message a record's JSON holds (a dead letter's `message`), as the bridge received it.
/// A record read from Kafka or RocketMQ shows its topic as `{system}:{topic}` and where it was
/// read as `source.*` user properties (`Message::as_dead_letter`): it gets its origin back, from
/// the systems `systems` names.
pub fn parse(
    v: &serde_json::Value,
    systems: &dyn Fn(&str) -> Option<&'static crate::message::System>,
) -> Result<Message, String> {
    use crate::message::{Properties, Publisher};
    let text = |name: &str| v[name].as_str().map(str::to_owned);
    let number = |name: &str| v[name].as_u64();
    let topic = text("topic").ok_or("no topic")?;
    let payload_text = v["payload"].as_str().ok_or("no payload")?;
    let payload = match v["payload_encoding"].as_str() {
        Some("base64") => BASE64
            .decode(payload_text)
            .map_err(|e| format!("payload: {e}"))?,
        _ => payload_text.as_bytes().to_vec(),
    };
    let mut user_properties: Vec<(String, String)> = Vec::new();
    for pair in v["user_properties"].as_array().into_iter().flatten() {
        match (pair[0].as_str(), pair[1].as_str()) {
            (Some(k), Some(v)) => user_properties.push((k.to_owned(), v.to_owned())),
            _ => return Err("a user property that is not a [name, value] pair".into()),
        }
    }
    let correlation_data = match text("correlation_data") {
        Some(c) => Some(
            BASE64
                .decode(c)
                .map_err(|e| format!("correlation_data: {e}"))?
                .into(),
        ),
        None => None,
    };
    let id = match text("message_id") {
        Some(id) => id.parse().map_err(|e| format!("message_id: {e}"))?,
        None => Uuid::now_v7(),
    };
    let mut msg = Message {
        id,
        topic,
        payload: payload.into(),
        qos: number("qos").unwrap_or(1) as u8,
        retain: v["retained"].as_bool().unwrap_or(false),
        dup: v["duplicate"].as_bool().unwrap_or(false),
        packet_id: number("packet_id").unwrap_or(0) as u16,
        properties: Properties {
            payload_format_indicator: number("payload_format_indicator").map(|n| n as u8),
            message_expiry_interval: number("message_expiry_interval").map(|n| n as u32),
            content_type: text("content_type"),
            response_topic: text("response_topic"),
            correlation_data,
            user_properties,
        },
        timestamp_ms: number("timestamp").unwrap_or_else(crate::message::now_ms),
        publisher: Publisher {
            client_id: text("publisher_client_id"),
            username: text("publisher_username"),
            host: text("publisher_host"),
        },
        origin: None,
        destination: None,
    };
    restore_origin(&mut msg, systems);
    Ok(msg)
}

/// A message shown as a dead letter (`Message::as_dead_letter`) as it was read: a topic
/// `{system}:{topic}` of a system `systems` names, and the `source.*` user properties, give
/// back its origin.
pub fn restore_origin(
    msg: &mut Message,
    systems: &dyn Fn(&str) -> Option<&'static crate::message::System>,
) {
    use crate::message::{Origin, Partition};
    let read_from = msg
        .topic
        .split_once(':')
        .and_then(|(system, topic)| Some((systems(system)?, topic.to_owned())));
    let Some((system, topic)) = read_from else {
        return;
    };
    let user = &mut msg.properties.user_properties;
    let mut take = |name: &str| {
        let at = user.iter().rposition(|(k, _)| k == name)?;
        Some(user.remove(at).1)
    };
    let origin = Origin {
        system,
        offset: take("source.offset")
            .and_then(|o| o.parse().ok())
            .unwrap_or(-1),
        key: take("source.key"),
        tag: take("source.tag"),
        partition: Partition {
            topic: topic.clone(),
            broker: take("source.broker").unwrap_or_default(),
            id: take("source.partition")
                .and_then(|p| p.parse().ok())
                .unwrap_or(0),
        },
    };
    msg.topic = topic;
    msg.origin = Some(Box::new(origin));
}

/// The id as text, without allocating.
fn hyphenated<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::tests::sample;

    #[test]
    fn a_record_reads_back_as_the_message() {
        let mut msg = sample("a/b");
        msg.payload = bytes::Bytes::from_static(b"\x00\xffbinary");
        msg.properties.correlation_data = Some(bytes::Bytes::from_static(b"\x01"));
        static LOG: crate::message::System = crate::message::System {
            name: "log",
            fields: None,
            ckafka_event: false,
        };
        let systems = |name: &str| (name == "log").then_some(&LOG);
        let json = serde_json::to_value(Record::new(&msg)).unwrap();
        assert_eq!(parse(&json, &systems).unwrap(), msg);

        let origin = crate::message::Origin {
            system: &LOG,
            partition: crate::message::Partition {
                topic: "orders".into(),
                broker: String::new(),
                id: 2,
            },
            offset: 41,
            key: Some("k".into()),
            tag: None,
        };
        let record = Message::record(origin, vec![("h".into(), "v".into())], "{}".into());
        let shown = record.as_dead_letter();
        let json = serde_json::to_value(Record::new(&shown)).unwrap();
        assert_eq!(parse(&json, &systems).unwrap(), record);
    }

    #[test]
    fn text_and_binary_payloads() {
        let mut msg = sample("a/b");
        let json: serde_json::Value = serde_json::to_value(Record::new(&msg)).unwrap();
        assert_eq!(json["payload"], "{\"speed\":42}");
        assert_eq!(json["payload_encoding"], "utf8");
        assert_eq!(json["message_id"], msg.id.to_string());
        assert_eq!(
            json["user_properties"][2],
            serde_json::json!(["plate", "second"])
        );
        assert_eq!(json["publisher_client_id"], "car-7");
        assert!(json.get("publisher_host").is_none());
        msg.payload = bytes::Bytes::from_static(&[0xff, 0x00]);
        let json = serde_json::to_value(Record::new(&msg)).unwrap();
        assert_eq!(json["payload"], "/wA=");
        assert_eq!(json["payload_encoding"], "base64");
    }
}

#[cfg(test)]
mod properties {
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine;
    use proptest::prelude::*;

    use super::Record;
    use crate::message::tests::any_message;

    proptest! {
        /// Any message becomes one JSON line that gives back its topic, payload and user
        /// properties; and any batch becomes a function event that parses.
        #[test]
        fn any_message_is_one_json_line_that_gives_it_back(
            msg in any_message(),
            base64 in any::<bool>(),
        ) {
            let mut line = Vec::new();
            Record::encoded(&msg, base64).write_line(&mut line);
            prop_assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            prop_assert_eq!(line.last(), Some(&b'\n'));
            let json: serde_json::Value = serde_json::from_slice(&line).unwrap();
            prop_assert_eq!(json["topic"].as_str(), Some(msg.topic.as_str()));
            let payload = json["payload"].as_str().unwrap();
            let back = match json["payload_encoding"].as_str() {
                Some("utf8") => payload.as_bytes().to_vec(),
                _ => BASE64.decode(payload).unwrap(),
            };
            prop_assert_eq!(&back[..], &msg.payload[..]);
            let user: Vec<(String, String)> =
                serde_json::from_value(json["user_properties"].clone()).unwrap();
            prop_assert_eq!(user, msg.properties.user_properties.clone());
        }
    }
}
