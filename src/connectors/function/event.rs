//! The event a function receives (the `http` kind's request body): a batch of messages in the
//! shape of Tencent Cloud SCF's triggers, `{"Records": [...]}`. A message from MQTT is an
//! `{"Mqtt": {...}}` record: the `record.rs` shape (the `file` sink's line) plus the route's
//! name and the event's version. A record read from Kafka is a `{"Ckafka": {...}}` record, as
//! SCF's CKafka trigger delivers it (`topic`, `partition`, `offset`, `msgKey`, `msgBody`), so
//! that a function written for that trigger takes it unchanged. The JSON Schema is
//! `schema/function-event-v1.json`; a test holds produced events to it. Which systems' records
//! take the CKafka shape their connector says (`System::ckafka_event`).

use std::borrow::Cow;
use std::ops::Range;

use serde::Serialize;

use crate::message::Message;
use crate::record::{payload_text, Record};

/// The version of the event's shape, in every MQTT record.
pub const VERSION: u32 = 1;

/// One record of the event.
#[derive(Serialize)]
enum Entry<'a> {
    Mqtt(MqttRecord<'a>),
    Ckafka(CkafkaRecord<'a>),
}

#[derive(Serialize)]
struct MqttRecord<'a> {
    version: u32,
    route: &'a str,
    #[serde(flatten)]
    record: Record<'a>,
}

/// A Kafka record as the CKafka trigger gives it, plus what it leaves out and a lossless
/// bridge must keep: the body's encoding (binary bodies travel in base64) and the headers.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CkafkaRecord<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    /// "None" for a record without a key, as the trigger writes it.
    msg_key: &'a str,
    msg_body: Cow<'a, str>,
    msg_body_encoding: &'static str,
    /// `[name, value]` pairs in the record's order; left out when there are none.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    headers: &'a [(String, String)],
}

impl<'a> Entry<'a> {
    fn new(route: &'a str, msg: &'a Message, base64: bool) -> Self {
        match msg.origin.as_deref().filter(|o| o.system.ckafka_event) {
            Some(origin) => {
                let (msg_body, msg_body_encoding) = payload_text(&msg.payload, base64);
                Entry::Ckafka(CkafkaRecord {
                    topic: &origin.partition.topic,
                    partition: origin.partition.id,
                    offset: origin.offset,
                    msg_key: origin.key.as_deref().unwrap_or("None"),
                    msg_body,
                    msg_body_encoding,
                    headers: &msg.properties.user_properties,
                })
            }
            _ => Entry::Mqtt(MqttRecord {
                version: VERSION,
                route,
                record: Record::encoded(msg, base64),
            }),
        }
    }
}

/// The event for `batch`, as JSON bytes. `base64` puts every payload in base64 (the route's
/// `base64_payload`); otherwise only payloads that are not valid UTF-8 are.
#[cfg(test)]
pub fn render(route: &str, batch: &[&Message], base64: bool) -> Vec<u8> {
    Records::new(route, batch, base64).into_event()
}

/// The records of an event, rendered one by one, so that a batch can be cut into requests
/// under a size limit (`chunks`) and each request assembled without rendering again.
pub struct Records {
    /// The whole batch's event: `{"Records":[` the records joined by commas `]}`.
    event: Vec<u8>,
    /// Where each record stands in it.
    spans: Vec<Range<usize>>,
}

const HEAD: &[u8] = b"{\"Records\":[";
const TAIL: &[u8] = b"]}";

impl Records {
    pub fn new(route: &str, batch: &[&Message], base64: bool) -> Self {
        let guess = batch.iter().map(|m| m.size() * 4 / 3 + 400).sum::<usize>();
        let mut event = Vec::with_capacity(HEAD.len() + guess + TAIL.len());
        event.extend_from_slice(HEAD);
        let mut spans = Vec::with_capacity(batch.len());
        for (i, msg) in batch.iter().enumerate() {
            if i > 0 {
                event.push(b',');
            }
            let entry = Entry::new(route, msg, base64);
            let start = event.len();
            // Serializing strings, numbers and lists into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut event, &entry);
            spans.push(start..event.len());
        }
        event.extend_from_slice(TAIL);
        Records { event, spans }
    }

    fn part(&self, i: usize) -> &[u8] {
        &self.event[self.spans[i].clone()]
    }

    /// The whole batch's event, without copying it.
    pub fn into_event(self) -> Vec<u8> {
        self.event
    }

    /// The event of records `range`, as JSON bytes (a copy).
    pub fn event(&self, range: Range<usize>) -> Vec<u8> {
        let parts: Vec<&[u8]> = range.map(|i| self.part(i)).collect();
        let len = HEAD.len() + TAIL.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(HEAD);
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(part);
        }
        out.extend_from_slice(TAIL);
        out
    }

    /// Cuts the records, in order, into runs whose event stays within `limit` bytes. `cost`
    /// gives what the bytes of an event cost in the request (1 per byte for a body; more where
    /// the event travels as an escaped JSON string), and `overhead` what the request adds
    /// around it. A record too large alone comes as its own `TooLarge`.
    pub fn chunks(
        &self,
        limit: usize,
        overhead: usize,
        cost: impl Fn(&[u8]) -> usize,
    ) -> Vec<Chunk> {
        let fixed = overhead + cost(HEAD) + cost(TAIL);
        let mut chunks = Vec::new();
        let (mut start, mut used) = (0, fixed);
        for i in 0..self.spans.len() {
            let size = cost(self.part(i));
            // A comma costs 1 however the event travels.
            if i > start && used + 1 + size > limit {
                chunks.push(Chunk::Fits(start..i));
                (start, used) = (i, fixed);
            }
            if i > start {
                used += 1 + size;
            } else if fixed + size > limit {
                chunks.push(Chunk::TooLarge(i, fixed + size));
                (start, used) = (i + 1, fixed);
            } else {
                used = fixed + size;
            }
        }
        if start < self.spans.len() {
            chunks.push(Chunk::Fits(start..self.spans.len()));
        }
        chunks
    }
}

/// A run of records sent in one request, or one record that no request can hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    Fits(Range<usize>),
    /// The record's index and the size its request would have had.
    TooLarge(usize, usize),
}

/// The length of `bytes` (valid UTF-8 from serde_json) once written as a JSON string's
/// contents: quotes and backslashes doubled, control characters escaped.
pub fn escaped_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .map(|&b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..0x20 => 6,
            _ => 1,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::tests::sample;

    fn schema() -> jsonschema::Validator {
        let text = include_str!("../../../schema/function-event-v1.json");
        let schema: serde_json::Value = serde_json::from_str(text).unwrap();
        jsonschema::validator_for(&schema).unwrap()
    }

    #[test]
    fn events_hold_to_their_schema() {
        let validator = schema();
        let mut full = sample("cars/B-AB-123/state");
        full.properties.correlation_data = Some(bytes::Bytes::from_static(&[1, 2]));
        full.properties.response_topic = Some("cars/B-AB-123/commands".into());
        full.properties.payload_format_indicator = Some(1);
        full.properties.message_expiry_interval = Some(60);
        full.publisher.username = Some("car".into());
        full.publisher.host = Some("10.0.0.7".into());
        let mut binary = sample("cars/x/raw");
        binary.payload = bytes::Bytes::from_static(&[0xff, 0x00, 0x7f]);
        binary.publisher = Default::default();
        binary.properties = Default::default();
        for base64 in [false, true] {
            let event = render("battery", &[&full, &binary], base64);
            let json: serde_json::Value = serde_json::from_slice(&event).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(&json)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{errors:?}\n{json:#}");
            let records = Records::new("battery", &[&full, &binary], base64);
            assert_eq!(records.event(0..2), event);
            let first = &json["Records"][0]["Mqtt"];
            assert_eq!(first["route"], "battery");
            assert_eq!(first["version"], 1);
            let expected = if base64 { "base64" } else { "utf8" };
            assert_eq!(first["payload_encoding"], expected);
            assert_eq!(json["Records"][1]["Mqtt"]["payload_encoding"], "base64");
            assert_eq!(json["Records"][1]["Mqtt"]["payload"], "/wB/");
        }
        let broken = serde_json::json!({"Records": [{"Mqtt": {"topic": "t"}}]});
        assert!(
            !validator.is_valid(&broken),
            "the schema requires the fields"
        );
    }

    #[test]
    fn kafka_records_come_as_the_ckafka_trigger_gives_them() {
        let origin = |key: Option<&str>, offset| crate::message::Origin {
            system: &crate::connectors::kafka::KAFKA,
            partition: crate::message::Partition {
                topic: "orders".into(),
                broker: String::new(),
                id: 3,
            },
            offset,
            key: key.map(str::to_owned),
            tag: None,
        };
        let keyed = Message::record(
            origin(Some("k-1"), 41),
            vec![("trace".into(), "a1".into())],
            bytes::Bytes::from_static(b"{\"n\":1}"),
        );
        let bare = Message::record(
            origin(None, 42),
            Vec::new(),
            bytes::Bytes::from_static(&[0xff, 0x00]),
        );
        let mqtt = sample("cars/1/state");
        for base64 in [false, true] {
            let event = render("orders-fn", &[&keyed, &bare, &mqtt], base64);
            let json: serde_json::Value = serde_json::from_slice(&event).unwrap();
            let errors: Vec<String> = schema().iter_errors(&json).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{errors:?}\n{json:#}");
            let body = match base64 {
                true => serde_json::json!("eyJuIjoxfQ=="),
                false => serde_json::json!("{\"n\":1}"),
            };
            let encoding = if base64 { "base64" } else { "utf8" };
            let expected = serde_json::json!({"Records": [
                {"Ckafka": {"topic": "orders", "partition": 3, "offset": 41, "msgKey": "k-1",
                            "msgBody": body, "msgBodyEncoding": encoding,
                            "headers": [["trace", "a1"]]}},
                {"Ckafka": {"topic": "orders", "partition": 3, "offset": 42, "msgKey": "None",
                            "msgBody": "/wA=", "msgBodyEncoding": "base64"}},
                json["Records"][2].clone(),
            ]});
            assert_eq!(json, expected);
            assert_eq!(json["Records"][2]["Mqtt"]["topic"], "cars/1/state");
        }
        let both = serde_json::json!({"Records": [{"Mqtt": json_of(&mqtt), "Ckafka": {}}]});
        assert!(!schema().is_valid(&both), "one system per record");
    }

    fn json_of(msg: &Message) -> serde_json::Value {
        let event: serde_json::Value = serde_json::from_slice(&render("r", &[msg], false)).unwrap();
        event["Records"][0]["Mqtt"].clone()
    }

    #[test]
    fn chunks_keep_each_request_within_the_limit() {
        let msgs: Vec<Message> = (0..50)
            .map(|i| {
                let mut m = sample(&format!("cars/{i}/state"));
                m.payload = bytes::Bytes::from(vec![b'"'; i * 7]);
                m
            })
            .collect();
        let batch: Vec<&Message> = msgs.iter().collect();
        let records = Records::new("r", &batch, false);
        for (limit, overhead, escaped) in [(2000, 0, false), (3000, 120, true), (900, 0, false)] {
            let cost = |b: &[u8]| if escaped { escaped_len(b) } else { b.len() };
            let chunks = records.chunks(limit, overhead, cost);
            let mut next = 0;
            for chunk in &chunks {
                match chunk {
                    Chunk::Fits(range) => {
                        assert_eq!(range.start, next);
                        next = range.end;
                        let event = records.event(range.clone());
                        assert!(overhead + cost(&event) <= limit, "{limit} {range:?}");
                        // Not cut needlessly: one more record would not have fitted.
                        if range.end < msgs.len() {
                            let more = records.event(range.start..range.end + 1);
                            assert!(overhead + cost(&more) > limit);
                        }
                    }
                    Chunk::TooLarge(i, size) => {
                        assert_eq!(*i, next);
                        next += 1;
                        let alone = records.event(*i..*i + 1);
                        assert_eq!(overhead + cost(&alone), *size);
                        assert!(*size > limit);
                    }
                }
            }
            assert_eq!(next, msgs.len());
        }
        // A JSON string holding the event, measured the way the request is.
        let event = records.event(0..3);
        let quoted = serde_json::to_string(std::str::from_utf8(&event).unwrap()).unwrap();
        assert_eq!(quoted.len(), escaped_len(&event) + 2);
    }

    proptest::proptest! {
        /// Whatever a message holds, a batch of it is an event with a record per message.
        #[test]
        fn any_message_makes_an_event(
            msg in crate::message::tests::any_message(),
            base64 in proptest::prelude::any::<bool>(),
        ) {
            let event = render("route", &[&msg, &msg], base64);
            let event: serde_json::Value = serde_json::from_slice(&event).unwrap();
            proptest::prop_assert_eq!(event["Records"].as_array().map(Vec::len), Some(2));
        }
    }
}
