//! The RocketMQ user properties of a message (the README's property table): the same
//! information as the Kafka headers, under names that RocketMQ takes and that its SQL92 filters
//! can name (`mqtt_topic`, not `mqtt.topic`); `ROCKETMQ` says which of them carry MQTT's fields,
//! for a route that carries RocketMQ messages to MQTT. A message read from Kafka or RocketMQ
//! keeps its own headers or properties, under the same rules for names. The MQTT v5 user properties keep their names; a
//! name given several times carries a JSON list of its values, in order; a name RocketMQ keeps
//! for itself (`KEYS`, `TAGS`, ...), one of the bridge's `mqtt_` names, or one with control
//! characters is carried as `mqtt_user_` + the name (control characters dropped).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use rocketmq_model::common::message::STRING_HASH_SET;

use crate::message::{FieldNames, Message, System};

/// RocketMQ as a system messages are read from.
pub static ROCKETMQ: System = System {
    name: "rocketmq",
    fields: Some(FIELDS),
    ckafka_event: false,
};

/// The names under which the MQTT fields go.
const FIELDS: FieldNames = FieldNames {
    content_type: "mqtt_content_type",
    response_topic: "mqtt_response_topic",
    correlation_data: "mqtt_correlation_data",
    payload_format: "mqtt_payload_format_indicator",
    expiry: "mqtt_message_expiry_interval",
    prefix: "mqtt_",
    renamed: Some(RENAMED),
};

/// A user property whose name RocketMQ keeps for itself goes under this prefix.
const RENAMED: &str = "mqtt_user_";

/// The property pairs for `msg`, in a stable order.
pub fn properties(msg: &Message) -> Vec<(String, String)> {
    let p = &msg.properties;
    if msg.origin.is_some() {
        return encodable(user_properties(&p.user_properties).collect());
    }
    let who = &msg.publisher;
    let mut out: Vec<(String, String)> = vec![
        ("mqtt_topic".into(), msg.topic.clone()),
        ("mqtt_qos".into(), msg.qos.to_string()),
        ("mqtt_retained".into(), msg.retain.to_string()),
        ("mqtt_duplicate".into(), msg.dup.to_string()),
        ("mqtt_packet_id".into(), msg.packet_id.to_string()),
        ("mqtt_message_id".into(), msg.id.hyphenated().to_string()),
        ("mqtt_timestamp".into(), msg.timestamp_ms.to_string()),
    ];
    let optional = [
        (FIELDS.content_type, p.content_type.clone()),
        (FIELDS.response_topic, p.response_topic.clone()),
        (
            FIELDS.correlation_data,
            p.correlation_data.as_ref().map(|c| BASE64.encode(c)),
        ),
        (
            FIELDS.payload_format,
            p.payload_format_indicator.map(|v| v.to_string()),
        ),
        (
            FIELDS.expiry,
            p.message_expiry_interval.map(|v| v.to_string()),
        ),
        ("mqtt_publisher_client_id", who.client_id.clone()),
        ("mqtt_publisher_username", who.username.clone()),
        ("mqtt_publisher_host", who.host.clone()),
    ];
    out.extend(
        optional
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_owned(), v?))),
    );
    out.extend(user_properties(&p.user_properties));
    encodable(out)
}

/// RocketMQ's encoding separates names and values with \x01 and pairs with \x02, and takes no
/// empty value.
fn encodable(mut out: Vec<(String, String)>) -> Vec<(String, String)> {
    out.retain(|(_, v)| !v.is_empty());
    for (_, v) in &mut out {
        if v.contains(['\u{1}', '\u{2}']) {
            *v = v.replace(['\u{1}', '\u{2}'], "\u{fffd}");
        }
    }
    out
}

/// User properties: each name once, repeated names as a JSON list of their values.
fn user_properties(properties: &[(String, String)]) -> impl Iterator<Item = (String, String)> + '_ {
    let mut names: Vec<String> = Vec::new();
    let mut values: Vec<Vec<&str>> = Vec::new();
    for (name, value) in properties {
        let name = user_name(name);
        match names.iter().position(|n| *n == name) {
            Some(i) => values[i].push(value),
            None => {
                names.push(name);
                values.push(vec![value]);
            }
        }
    }
    names.into_iter().zip(values).map(|(name, values)| {
        let value = match values.as_slice() {
            [one] => (*one).to_owned(),
            many => serde_json::to_string(many).unwrap_or_default(),
        };
        (name, value)
    })
}

/// A user property's name as RocketMQ carries it.
fn user_name(name: &str) -> String {
    let clean: String = name.chars().filter(|c| !c.is_control()).collect();
    let taken =
        clean.is_empty() || clean.starts_with("mqtt_") || STRING_HASH_SET.contains(clean.as_str());
    match taken || clean.len() != name.len() {
        true => format!("{RENAMED}{clean}"),
        false => clean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::tests::sample;

    #[test]
    fn user_properties_keep_their_names_and_repeats() {
        let mut msg = sample("chargers/P-17/status");
        msg.properties.user_properties = vec![
            ("site".into(), "north".into()),
            ("fw".into(), "1".into()),
            ("fw".into(), "2".into()),
            ("KEYS".into(), "x".into()),
            ("mqtt_topic".into(), "spoof".into()),
            ("a\u{1}b".into(), "v\u{2}w".into()),
        ];
        let props = properties(&msg);
        let get = |k: &str| props.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("mqtt_topic"), Some("chargers/P-17/status"));
        assert_eq!(get("site"), Some("north"));
        assert_eq!(get("fw"), Some(r#"["1","2"]"#));
        assert_eq!(get("mqtt_user_KEYS"), Some("x"));
        assert_eq!(get("mqtt_user_mqtt_topic"), Some("spoof"));
        assert_eq!(get("mqtt_user_ab"), Some("v\u{fffd}w"));
        assert_eq!(props.iter().filter(|(n, _)| n == "mqtt_topic").count(), 1);
    }
}

#[cfg(test)]
mod any_message {
    use proptest::prelude::*;

    use super::*;
    use crate::message::tests::any_message;

    proptest! {
        /// Whatever the message holds, its properties are what RocketMQ's encoding carries:
        /// each name once, no control character in a name, no separator or emptiness in a
        /// value, no name RocketMQ keeps for itself.
        #[test]
        fn properties_are_always_encodable(msg in any_message()) {
            let props = properties(&msg);
            let mut names = std::collections::HashSet::new();
            for (name, value) in &props {
                prop_assert!(names.insert(name.clone()), "{} twice", name);
                prop_assert!(!name.chars().any(char::is_control), "{:?}", name);
                prop_assert!(!STRING_HASH_SET.contains(name.as_str()), "{:?}", name);
                let encodable = !value.is_empty() && !value.contains(['\u{1}', '\u{2}']);
                prop_assert!(encodable, "{}: {:?}", name, value);
            }
            if !msg.topic.is_empty() {
                prop_assert_eq!(props[0].0.as_str(), "mqtt_topic");
            }
        }
    }
}
