//! The MQTT PUBLISH a message becomes: a Kafka record's headers or a RocketMQ message's user
//! properties become MQTT v5 user properties, except the names under which a route wrote MQTT's
//! own fields there (each system's connector names them: `message::FieldNames`), which map back
//! to those fields; a message read from MQTT keeps its properties as they are.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use rumqttc::v5::mqttbytes::QoS;

use super::template::{check_mqtt_chars, forbidden, TopicTemplate};
use crate::connectors::mqtt::Publication;
use crate::message::{FieldNames, Message};
use crate::topic::check_mqtt_topic;

/// How a flow's messages are published: the topic template and the PUBLISH's flags.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishSettings {
    pub topic: TopicTemplate,
    /// 0 or 1.
    pub qos: u8,
    pub retain: bool,
    /// The Message Expiry Interval every PUBLISH gets, over the one the message carries.
    pub message_expiry: Option<Duration>,
}

/// The PUBLISH for `msg`, to `topic`, or why MQTT cannot carry it. Characters MQTT strings may
/// not hold (controls, noncharacters) are replaced by U+FFFD in properties; a property longer
/// than 65,535 bytes or a response topic that is not one makes the message unpublishable.
pub fn publication(
    msg: &Message,
    topic: String,
    s: &PublishSettings,
) -> Result<Publication, String> {
    let fields = msg.origin.as_ref().map(|o| o.system.fields.as_ref());
    let mut p = match fields {
        Some(Some(names)) => from_headers(&msg.properties.user_properties, names)?,
        Some(None) | None => mqtt_properties(msg)?,
    };
    if let Some(expiry) = s.message_expiry {
        p.message_expiry_interval = Some(expiry.as_secs().min(u32::MAX as u64) as u32);
    }
    Ok(Publication {
        topic,
        payload: msg.payload.clone(),
        qos: match s.qos {
            0 => QoS::AtMostOnce,
            _ => QoS::AtLeastOnce,
        },
        retain: s.retain,
        properties: p,
    })
}

/// The properties of a message read from MQTT, its strings made MQTT-safe.
fn mqtt_properties(msg: &Message) -> Result<PublishProperties, String> {
    let m = &msg.properties;
    let text = |s: &Option<String>| s.as_deref().map(mqtt_string).transpose();
    let user = m.user_properties.iter();
    Ok(PublishProperties {
        payload_format_indicator: m.payload_format_indicator,
        message_expiry_interval: m.message_expiry_interval,
        content_type: text(&m.content_type)?,
        response_topic: text(&m.response_topic)?,
        correlation_data: m.correlation_data.clone(),
        user_properties: user
            .map(|(k, v)| Ok((mqtt_string(k)?, mqtt_string(v)?)))
            .collect::<Result<_, String>>()?,
        ..Default::default()
    })
}

/// The properties for a source's headers (or properties), the names of MQTT's fields mapped
/// back.
fn from_headers(
    headers: &[(String, String)],
    names: &FieldNames,
) -> Result<PublishProperties, String> {
    let mut p = PublishProperties::default();
    for (name, value) in headers {
        let (name, value) = (mqtt_string(name)?, mqtt_string(value)?);
        if name == names.content_type {
            p.content_type = Some(value);
        } else if name == names.response_topic {
            check_mqtt_topic(&value)
                .and_then(|()| check_mqtt_chars(&value))
                .map_err(|e| format!("response topic \"{value}\": {e}"))?;
            p.response_topic = Some(value);
        } else if name == names.correlation_data {
            // Written in base64 by the uplink; kept as text when it is not.
            p.correlation_data = Some(match BASE64.decode(&value) {
                Ok(bytes) => bytes.into(),
                Err(_) => Bytes::copy_from_slice(value.as_bytes()),
            });
        } else if name == names.payload_format {
            p.payload_format_indicator = value.parse().ok().filter(|v| *v <= 1);
        } else if name == names.expiry {
            p.message_expiry_interval = value.parse().ok().filter(|v| *v > 0);
        } else if let Some(user) = names.user_name(&name) {
            p.user_properties.push((user.to_owned(), value));
        }
    }
    Ok(p)
}

/// `s` as an MQTT string: characters MQTT forbids (U+0000, controls, noncharacters) replaced
/// by U+FFFD; an error when longer than 65,535 bytes.
fn mqtt_string(s: &str) -> Result<String, String> {
    if s.len() > 65_535 {
        return Err(format!(
            "a header or property of {} bytes: MQTT strings are at most 65,535",
            s.len()
        ));
    }
    Ok(s.chars()
        .map(|c| if forbidden(c) { '\u{fffd}' } else { c })
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::connectors::kafka::KAFKA;
    use crate::connectors::rocketmq::ROCKETMQ;
    use crate::message::{Origin, Partition, System};

    /// A record read from `topic` with `headers`.
    pub(crate) fn record(topic: &str, headers: Vec<(String, String)>) -> Message {
        record_of(&KAFKA, topic, headers)
    }

    pub(crate) fn record_of(
        system: &'static System,
        topic: &str,
        headers: Vec<(String, String)>,
    ) -> Message {
        let origin = Origin {
            system,
            partition: Partition {
                topic: topic.into(),
                broker: String::new(),
                id: 0,
            },
            offset: 0,
            key: None,
            tag: None,
        };
        Message::record(origin, headers, Bytes::from_static(b"{}"))
    }

    pub(crate) fn settings() -> PublishSettings {
        PublishSettings {
            topic: TopicTemplate::parse("c/{key}").unwrap(),
            qos: 1,
            retain: true,
            message_expiry: None,
        }
    }

    #[test]
    fn the_uplinks_names_map_back_to_mqtt_fields() {
        let headers = vec![
            ("mqtt_topic".into(), "chargers/P-1/status".into()),
            ("mqtt_content_type".into(), "application/json".into()),
            ("mqtt_response_topic".into(), "replies/1".into()),
            ("mqtt_correlation_data".into(), "AQL/".into()),
            ("mqtt_message_expiry_interval".into(), "60".into()),
            ("mqtt_user_KEYS".into(), "k".into()),
            ("site".into(), "north".into()),
        ];
        let m = record_of(&ROCKETMQ, "commands", headers);
        let p = publication(&m, "c/1".into(), &settings()).unwrap();
        assert_eq!(
            p.properties.content_type.as_deref(),
            Some("application/json")
        );
        assert_eq!(p.properties.response_topic.as_deref(), Some("replies/1"));
        assert_eq!(
            p.properties.correlation_data.as_deref(),
            Some(&[1u8, 2, 255][..])
        );
        assert_eq!(p.properties.message_expiry_interval, Some(60));
        assert_eq!(
            p.properties.user_properties,
            [("KEYS".into(), "k".into()), ("site".into(), "north".into())]
        );
        assert!(p.retain);
        assert_eq!(p.qos, QoS::AtLeastOnce);
    }

    #[test]
    fn kafka_headers_keep_order_and_repeats() {
        let m = record(
            "commands",
            vec![
                ("mqtt.topic".into(), "x".into()),
                ("fw".into(), "1".into()),
                ("mqtt.content.type".into(), "text/plain".into()),
                ("fw".into(), "2".into()),
            ],
        );
        let mut d = settings();
        d.message_expiry = Some(std::time::Duration::from_secs(600));
        d.qos = 0;
        let p = publication(&m, "c/1".into(), &d).unwrap();
        assert_eq!(p.properties.content_type.as_deref(), Some("text/plain"));
        assert_eq!(
            p.properties.user_properties,
            [("fw".into(), "1".into()), ("fw".into(), "2".into())]
        );
        assert_eq!(p.properties.message_expiry_interval, Some(600));
        assert_eq!(p.qos, QoS::AtMostOnce);
    }
}

#[cfg(test)]
mod string_tests {
    use super::*;

    #[test]
    fn mqtt_strings_lose_forbidden_characters_and_long_ones_are_refused() {
        assert_eq!(
            mqtt_string("a\u{0}b\nc\u{85}d\u{fffe}").unwrap(),
            "a\u{fffd}b\u{fffd}c\u{fffd}d\u{fffd}"
        );
        assert_eq!(mqtt_string("plain é").unwrap(), "plain é");
        assert!(mqtt_string(&"x".repeat(65_536)).is_err());
        assert!(check_mqtt_chars("a/b\tc").is_err());
        assert!(check_mqtt_chars("chargers/P-1/commands").is_ok());
    }
}

#[cfg(test)]
mod any_message {
    use proptest::collection::vec;
    use proptest::option::of;
    use proptest::prelude::*;

    use super::tests::settings;
    use super::*;
    use crate::connectors::kafka::KAFKA;
    use crate::connectors::rocketmq::ROCKETMQ;
    use crate::message::{Origin, Partition};

    /// Header names the uplink writes, so that the mapping back comes up often.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("mqtt.content.type".to_owned()),
            Just("mqtt.response.topic".to_owned()),
            Just("mqtt.correlation.data".to_owned()),
            Just("mqtt.message.expiry.interval".to_owned()),
            Just("mqtt_response_topic".to_owned()),
            Just("mqtt_payload_format_indicator".to_owned()),
            Just("mqtt_user_KEYS".to_owned()),
            Just("deviceId".to_owned()),
            any::<String>(),
        ]
    }

    fn source_message() -> impl Strategy<Value = Message> {
        let text = || any::<String>();
        (
            (text(), of(text()), of(text()), any::<bool>()),
            vec((name(), text()), 0..8),
            vec(any::<u8>(), 0..128),
            any::<i32>(),
            any::<i64>(),
        )
            .prop_map(|((topic, key, tag, kafka), headers, payload, id, offset)| {
                let origin = Origin {
                    system: if kafka { &KAFKA } else { &ROCKETMQ },
                    partition: Partition {
                        topic,
                        broker: String::new(),
                        id,
                    },
                    offset,
                    key,
                    tag,
                };
                Message::record(origin, headers, Bytes::from(payload))
            })
    }

    fn mqtt_ok(s: &str) -> bool {
        s.len() <= 65_535 && check_mqtt_chars(s).is_ok()
    }

    proptest! {
        /// Whatever a Kafka or RocketMQ message carries, it becomes a PUBLISH whose strings
        /// MQTT takes, or an error that dead-letters it; never a panic.
        #[test]
        fn any_source_message_maps_to_a_valid_publish_or_an_error(
            msg in source_message(),
            qos in 0u8..=1,
            template in "[a-z/{}.]{0,6}(\\{key\\}|\\{tag\\}|\\{topic\\}|\\{property.deviceId\\})?",
        ) {
            let Ok(template) = TopicTemplate::parse(&template) else {
                return Ok(());
            };
            let mut d = settings();
            d.qos = qos;
            let dead = msg.as_dead_letter();
            prop_assert!(dead.topic.ends_with(&msg.topic));
            let Ok(topic) = template.render(&msg) else {
                return Ok(());
            };
            prop_assert!(mqtt_ok(&topic) && crate::topic::check_mqtt_topic(&topic).is_ok());
            let Ok(p) = publication(&msg, topic, &d) else {
                return Ok(());
            };
            let props = &p.properties;
            for (name, value) in &props.user_properties {
                prop_assert!(mqtt_ok(name) && mqtt_ok(value), "{:?}: {:?}", name, value);
            }
            for s in [&props.content_type, &props.response_topic].into_iter().flatten() {
                prop_assert!(mqtt_ok(s), "{:?}", s);
            }
            if let Some(response) = &props.response_topic {
                prop_assert!(crate::topic::check_mqtt_topic(response).is_ok());
            }
            prop_assert!(props.payload_format_indicator.is_none_or(|v| v <= 1));
            prop_assert_eq!(&p.payload, &msg.payload);
        }
    }
}
