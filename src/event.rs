//! The event a function receives (the `http` kind's request body): a batch of messages in the
//! shape of Tencent Cloud SCF's CKafka trigger, `{"Records": [{"Mqtt": {...}}, ...]}`. Each
//! record is the `record.rs` shape (the `file` sink's line) plus the route's name and the
//! event's version. The JSON Schema is `schema/function-event-v1.json`; a test holds produced
//! events to it.

use serde::Serialize;

use crate::message::Message;
use crate::record::Record;

/// The version of the event's shape, in every record.
pub const VERSION: u32 = 1;

#[derive(Serialize)]
struct Event<'a> {
    #[serde(rename = "Records")]
    records: Vec<Entry<'a>>,
}

#[derive(Serialize)]
struct Entry<'a> {
    #[serde(rename = "Mqtt")]
    mqtt: MqttRecord<'a>,
}

#[derive(Serialize)]
struct MqttRecord<'a> {
    version: u32,
    route: &'a str,
    #[serde(flatten)]
    record: Record<'a>,
}

fn event<'a>(route: &'a str, batch: &[&'a Message], base64: bool) -> Event<'a> {
    let records = batch
        .iter()
        .map(|msg| Entry {
            mqtt: MqttRecord {
                version: VERSION,
                route,
                record: Record::encoded(msg, base64),
            },
        })
        .collect();
    Event { records }
}

/// The event for `batch`, as JSON bytes. `base64` puts every payload in base64 (the route's
/// `base64_payload`); otherwise only payloads that are not valid UTF-8 are.
pub fn render(route: &str, batch: &[&Message], base64: bool) -> Vec<u8> {
    // Serializing strings, numbers and lists into a Vec cannot fail.
    serde_json::to_vec(&event(route, batch, base64)).unwrap_or_default()
}

/// The size `render` would give `batch` (to split batches to a request limit), without
/// keeping the text.
pub fn size(route: &str, batch: &[&Message], base64: bool) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, &event(route, batch, base64));
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::tests::sample;

    fn schema() -> jsonschema::Validator {
        let text = include_str!("../schema/function-event-v1.json");
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
            assert_eq!(event.len(), size("battery", &[&full, &binary], base64));
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
}
