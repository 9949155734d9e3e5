//! The MQTT topic a message is published to (a route's `mqtt_topic`): the one template grammar,
//! over what the route's messages carry (a Kafka or RocketMQ record: `{key}`, `{tag}`,
//! `{topic}`, `{topic.N}`, `{property.NAME}` / `{header.NAME}`; an MQTT message: `{topic}`,
//! `{topic.N}`, `{user.NAME}`, ...), rendered strictly, since a placeholder without a value must
//! not make `chargers//commands`, and checked as an MQTT topic to publish to.

use crate::message::Message;
use crate::template::{Template, Vocabulary};
use crate::topic::check_mqtt_topic;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate(Template);

impl TopicTemplate {
    /// A template over Kafka records and RocketMQ messages.
    pub fn parse(input: &str) -> Result<Self, String> {
        Self::parse_for(input, Vocabulary::Record)
    }

    /// A template over messages that carry `vocabulary`.
    pub fn parse_for(input: &str, vocabulary: Vocabulary) -> Result<Self, String> {
        Template::parse_for(input, vocabulary)
            .map(TopicTemplate)
            .map_err(|e| e.to_string())
    }

    /// The template as written.
    pub fn text(&self) -> &str {
        self.0.text()
    }

    pub fn uses_tag(&self) -> bool {
        self.0.uses_tag()
    }

    /// Problems visible without a message: an empty template, wildcards or NUL in its literal
    /// text.
    pub fn check_static(&self) -> Result<(), String> {
        if self.0.text().is_empty() {
            return Err("empty".into());
        }
        if self.0.literals().any(|s| s.contains(['+', '#', '\0'])) {
            return Err(format!(
                "\"{}\": a topic to publish to cannot hold `+`, `#` or NUL",
                self.text()
            ));
        }
        Ok(())
    }

    /// The topic for `msg`, or why it has none.
    pub fn render(&self, msg: &Message) -> Result<String, String> {
        let out = self.0.render_strict(msg).map_err(|e| e.to_string())?;
        check_publish_topic(&out)?;
        Ok(out)
    }
}

/// A topic to publish to: an error for one with wildcards, forbidden characters or of a wrong
/// length.
pub fn check_publish_topic(topic: &str) -> Result<(), String> {
    check_mqtt_topic(topic)
        .and_then(|()| check_mqtt_chars(topic))
        .map_err(|e| format!("topic {topic:?}: {e}"))
}

/// Characters brokers refuse in MQTT strings (mosquitto closes the connection over one).
pub(super) fn forbidden(c: char) -> bool {
    let n = c as u32;
    c.is_control() || (0xFDD0..=0xFDEF).contains(&n) || (n & 0xFFFE) == 0xFFFE
}

/// A topic's characters: an error for one that brokers refuse.
pub fn check_mqtt_chars(topic: &str) -> Result<(), String> {
    match topic.chars().find(|c| forbidden(*c)) {
        Some(c) => Err(format!("holds the character {:?}, which MQTT forbids", c)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::connectors::mqtt::publication::tests::record;

    fn msg() -> Message {
        let mut m = record("commands", vec![("deviceId".into(), "P-9".into())]);
        let origin = m.origin.as_mut().unwrap();
        origin.key = Some("P-17".into());
        origin.tag = Some("start".into());
        m
    }

    #[test]
    fn renders_each_placeholder() {
        let t = TopicTemplate::parse("chargers/{property.deviceId}/{tag}/{key}/{{x}}").unwrap();
        assert_eq!(t.render(&msg()).unwrap(), "chargers/P-9/start/P-17/{x}");
        let t = TopicTemplate::parse("x/{header.deviceId}/{topic}").unwrap();
        assert_eq!(t.render(&msg()).unwrap(), "x/P-9/commands");
    }

    #[test]
    fn a_missing_value_or_a_bad_topic_is_an_error() {
        let t = TopicTemplate::parse("chargers/{property.site}/commands").unwrap();
        let e = t.render(&msg()).unwrap_err();
        assert!(e.contains("{property.site}"), "{e}");
        let mut m = msg();
        m.origin.as_mut().unwrap().key = Some("a/+".into());
        let e = TopicTemplate::parse("c/{key}")
            .unwrap()
            .render(&m)
            .unwrap_err();
        assert!(e.contains("wildcards"), "{e}");
    }

    #[test]
    fn rejects_malformed_templates() {
        assert!(TopicTemplate::parse("a/{key")
            .unwrap_err()
            .contains("unclosed"));
        assert!(TopicTemplate::parse("a}")
            .unwrap_err()
            .contains("closes nothing"));
        assert!(TopicTemplate::parse("{user.x}")
            .unwrap_err()
            .contains("unknown"));
        assert!(TopicTemplate::parse("{property.}").is_err());
        let t = TopicTemplate::parse("a/#").unwrap();
        assert!(t.check_static().is_err());
    }
}
