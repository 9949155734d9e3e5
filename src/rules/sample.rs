//! `mqbridge test-rule`: a flow's rules tried on sample messages, one JSON line each way. In:
//! `{"topic": "cars/7/battery", "payload": {...} or "text", "properties": {"name": "value"},
//! "key": "...", "tag": "..."}` (all but `topic` optional; `key` and `tag` as a record read
//! from Kafka or RocketMQ carries them). Out: `{"outcome": "deliver", "messages": [...]}`,
//! `{"outcome": "filter"}` or `{"outcome": "dead_letter", "error_kind": ..., "error": ...}`,
//! or `{"outcome": "bad_input", "error": ...}` for a line that is not such a message.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Applied, Rules};
use crate::message::{Message, Origin, Partition, System};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sample {
    topic: String,
    #[serde(default)]
    payload: Value,
    #[serde(default)]
    properties: serde_json::Map<String, Value>,
    key: Option<String>,
    tag: Option<String>,
}

/// What `rules` make of the sample message on `line`.
pub fn try_line(rules: &Rules, line: &str) -> Value {
    let sample: Sample = match serde_json::from_str(line) {
        Ok(s) => s,
        Err(e) => return json!({"outcome": "bad_input", "error": e.to_string()}),
    };
    match rules.apply(message(sample)) {
        Applied::One(msg) => json!({"outcome": "deliver", "messages": [shown(&msg)]}),
        Applied::Many(msgs) => {
            let shown: Vec<Value> = msgs.iter().map(shown).collect();
            json!({"outcome": "deliver", "messages": shown})
        }
        Applied::Filtered => json!({"outcome": "filter"}),
        Applied::Refused(_, e) => json!({
            "outcome": "dead_letter",
            "error_kind": e.kind(),
            "error": e.to_string(),
        }),
    }
}

fn message(sample: Sample) -> Message {
    let payload = match sample.payload {
        Value::String(text) => Bytes::from(text),
        Value::Null => Bytes::new(),
        other => Bytes::from(other.to_string()),
    };
    let user_properties = sample
        .properties
        .into_iter()
        .map(|(name, value)| match value {
            Value::String(text) => (name, text),
            other => (name, other.to_string()),
        })
        .collect();
    // A sample with a key or a tag stands for a record read from Kafka or RocketMQ.
    let record = sample.key.is_some() || sample.tag.is_some();
    let origin = origin(&sample.topic, sample.key, sample.tag);
    let mut msg = Message::record(origin, user_properties, payload);
    if !record {
        msg.origin = None;
    }
    msg
}

/// What a sample with a key or a tag stands for: a record read from a system that has them.
static SAMPLED: System = System {
    name: "sample",
    fields: None,
    ckafka_event: false,
};

fn origin(topic: &str, key: Option<String>, tag: Option<String>) -> Origin {
    Origin {
        system: &SAMPLED,
        partition: Partition {
            topic: topic.to_owned(),
            broker: String::new(),
            id: 0,
        },
        offset: 0,
        key,
        tag,
    }
}

/// A message as `test-rule` prints it: the payload as JSON where it parses, else as text.
fn shown(msg: &Message) -> Value {
    let payload = serde_json::from_slice::<Value>(&msg.payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&msg.payload).into_owned()));
    let properties: serde_json::Map<String, Value> = msg
        .properties
        .user_properties
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut out = json!({"topic": msg.topic, "payload": payload, "properties": properties});
    if let Some(to) = &msg.destination {
        out["destination"] = json!({"topic": to.topic, "key": to.key, "tag": to.tag});
    }
    out
}
