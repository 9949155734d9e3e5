//! The event a rule sees, made from a message, and the messages made from what a `transform`
//! left. Fields in, as VRL paths:
//! - `.payload`: the payload parsed as JSON where it parses, else its text where it is UTF-8,
//!   else its bytes;
//! - `.topic` and `.topic_levels` (the topic split at `/`); `.qos`, `.retain`;
//! - `.properties`: user properties (Kafka headers, RocketMQ properties), a name repeated
//!   becomes an array of its values;
//! - `.publisher.client_id`, `.publisher.username`, `.publisher.host` where the broker tells
//!   them; `.timestamp` (when the bridge received it) and `.id` (the bridge's message id);
//! - read from Kafka or RocketMQ: `.key`, `.tag`, `.partition`, `.offset`.
//!
//! Fields out: `.payload` (an object, array, number or boolean becomes its JSON; text and bytes
//! go as they are), `.properties`, `.topic`, and `.destination.topic`, `.destination.key`,
//! `.destination.tag` (where the message goes, over the route's templates).

use std::collections::BTreeMap;

use bytes::Bytes;
use vrl::value::kind::{Collection, Field};
use vrl::value::{KeyString, Kind, ObjectMap, Value};

use crate::message::{Destination, Message};

/// The type of every event, for the compiler: a program may use `.topic` as a string without
/// asserting it, while `.payload` may be anything.
pub fn kind() -> Kind {
    let text_or_list = Kind::bytes().or_array(Collection::from_unknown(Kind::bytes()));
    let from_records = Kind::bytes().or_undefined();
    let fields: BTreeMap<Field, Kind> = [
        ("payload", Kind::json()),
        ("topic", Kind::bytes()),
        (
            "topic_levels",
            Kind::array(Collection::from_unknown(Kind::bytes())),
        ),
        ("qos", Kind::integer()),
        ("retain", Kind::boolean()),
        (
            "properties",
            Kind::object(Collection::from_unknown(text_or_list)),
        ),
        (
            "publisher",
            Kind::object(Collection::from_unknown(Kind::bytes())),
        ),
        ("timestamp", Kind::timestamp().or_null()),
        ("id", Kind::bytes()),
        ("key", from_records.clone()),
        ("tag", from_records),
        ("partition", Kind::integer().or_undefined()),
        ("offset", Kind::integer().or_undefined()),
        (
            "destination",
            Kind::object(Collection::from_unknown(Kind::bytes())).or_undefined(),
        ),
    ]
    .into_iter()
    .map(|(name, kind)| (Field::from(name), kind))
    .collect();
    Kind::object(Collection::from(fields))
}

/// `msg`'s payload as the event shows it: `json` (the payload parsed) where it parses, else
/// its text, else its bytes.
pub fn payload(msg: &Message, json: Option<Value>) -> Value {
    json.unwrap_or_else(|| match std::str::from_utf8(&msg.payload) {
        Ok(text) => Value::from(text),
        Err(_) => Value::Bytes(msg.payload.clone()),
    })
}

/// The event for `msg`, with `payload` when a program reads it.
pub fn of(msg: &Message, payload: Option<Value>) -> Value {
    let mut event = ObjectMap::new();
    if let Some(payload) = payload {
        event.insert("payload".into(), payload);
    }
    event.insert("topic".into(), Value::from(msg.topic.as_str()));
    let levels = msg.topic.split('/').map(Value::from).collect();
    event.insert("topic_levels".into(), Value::Array(levels));
    event.insert("qos".into(), Value::Integer(msg.qos.into()));
    event.insert("retain".into(), Value::Boolean(msg.retain));
    event.insert(
        "properties".into(),
        properties(&msg.properties.user_properties),
    );
    let who = &msg.publisher;
    let publisher = [
        ("client_id", &who.client_id),
        ("username", &who.username),
        ("host", &who.host),
    ];
    let publisher = publisher
        .into_iter()
        .filter_map(|(k, v)| Some((KeyString::from(k), Value::from(v.as_deref()?))))
        .collect();
    event.insert("publisher".into(), Value::Object(publisher));
    let at = chrono::DateTime::from_timestamp_millis(msg.timestamp_ms as i64);
    event.insert("timestamp".into(), at.map_or(Value::Null, Value::Timestamp));
    event.insert("id".into(), Value::from(msg.id.hyphenated().to_string()));
    if let Some(origin) = &msg.origin {
        let optional = [("key", &origin.key), ("tag", &origin.tag)];
        for (name, value) in optional {
            if let Some(v) = value {
                event.insert(name.into(), Value::from(v.as_str()));
            }
        }
        event.insert(
            "partition".into(),
            Value::Integer(origin.partition.id.into()),
        );
        event.insert("offset".into(), Value::Integer(origin.offset));
    }
    Value::Object(event)
}

fn properties(pairs: &[(String, String)]) -> Value {
    let mut out = ObjectMap::new();
    for (name, value) in pairs {
        let value = Value::from(value.as_str());
        match out.get_mut(name.as_str()) {
            None => {
                out.insert(name.as_str().into(), value);
            }
            Some(Value::Array(values)) => values.push(value),
            Some(first) => *first = Value::Array(vec![first.clone(), value]),
        }
    }
    Value::Object(out)
}

/// What a transform's output event sets on the message it came from.
pub struct Changes {
    payload: Option<Bytes>,
    topic: Option<String>,
    properties: Option<Vec<(String, String)>>,
    destination: Option<Option<Destination>>,
}

impl Changes {
    /// What `event` sets (its payload only when the transform may change it); why it cannot
    /// be a message, when it cannot.
    pub fn of(event: Value, payload: bool) -> Result<Self, String> {
        let Value::Object(mut event) = event else {
            return Err(format!(
                "the transform left {}, not an object (a message) or an array of them",
                type_of(&event)
            ));
        };
        let topic = match event.remove("topic") {
            Some(Value::Bytes(t)) => Some(text(&t, "topic")?),
            Some(Value::String(t)) => Some(t.to_string()),
            Some(other) => return Err(format!(".topic is {}, not a string", type_of(&other))),
            None => None,
        };
        Ok(Changes {
            payload: match payload {
                true => event.remove("payload").map(payload_bytes).transpose()?,
                false => None,
            },
            topic,
            properties: event
                .remove("properties")
                .map(user_properties)
                .transpose()?,
            destination: event.remove("destination").map(destination).transpose()?,
        })
    }

    /// The message as the transform left it.
    pub fn applied(self, mut msg: Message) -> Message {
        if let Some(payload) = self.payload {
            msg.payload = payload;
        }
        if let Some(topic) = self.topic {
            msg.topic = topic;
        }
        if let Some(properties) = self.properties {
            msg.properties.user_properties = properties;
        }
        if let Some(to) = self.destination {
            msg.destination = to.map(Box::new);
        }
        msg
    }
}

fn payload_bytes(payload: Value) -> Result<Bytes, String> {
    match payload {
        Value::Bytes(b) => Ok(b),
        Value::String(s) => Ok(Bytes::from(s.to_string())),
        Value::Null => Ok(Bytes::new()),
        other => serde_json::to_vec(&other)
            .map(Bytes::from)
            .map_err(|e| format!(".payload cannot be written as JSON: {e}")),
    }
}

fn user_properties(properties: Value) -> Result<Vec<(String, String)>, String> {
    let Value::Object(properties) = properties else {
        return Err(format!(
            ".properties is {}, not an object",
            type_of(&properties)
        ));
    };
    let mut out = Vec::new();
    for (name, value) in properties {
        let values = match value {
            Value::Array(values) => values,
            Value::Null => continue,
            one => vec![one],
        };
        for value in values {
            out.push((
                name.to_string(),
                scalar(value, &format!("properties.{name}"))?,
            ));
        }
    }
    Ok(out)
}

fn destination(to: Value) -> Result<Option<Destination>, String> {
    let Value::Object(mut to) = to else {
        return match to {
            Value::Null => Ok(None),
            other => Err(format!(
                ".destination is {}, not an object",
                type_of(&other)
            )),
        };
    };
    let mut field = |name: &str| -> Result<Option<String>, String> {
        match to.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => scalar(v, &format!("destination.{name}")).map(Some),
        }
    };
    Ok(Some(Destination {
        topic: field("topic")?,
        key: field("key")?,
        tag: field("tag")?,
    }))
}

/// A property or destination value: text as it is, a number or boolean as written.
fn scalar(value: Value, path: &str) -> Result<String, String> {
    match value {
        Value::Bytes(b) => text(&b, path),
        Value::String(s) => Ok(s.to_string()),
        Value::Integer(n) => Ok(n.to_string()),
        Value::Float(f) => Ok(f.to_string()),
        Value::Boolean(b) => Ok(b.to_string()),
        other => Err(format!(".{path} is {}, not a string", type_of(&other))),
    }
}

fn text(bytes: &[u8], path: &str) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| format!(".{path} is not UTF-8 text"))
}

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Bytes(_) | Value::String(_) => "a string",
        Value::Regex(_) => "a regex",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Timestamp(_) => "a timestamp",
        Value::Object(_) => "an object",
        Value::Array(_) => "an array",
        Value::Null => "null",
    }
}
