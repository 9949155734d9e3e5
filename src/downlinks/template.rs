//! The `mqtt_topic` template of a downlink, over the source message: `{key}`, `{tag}`,
//! `{property.NAME}` / `{header.NAME}` and `{topic}`; `{{` and `}}` are literal braces. Unlike
//! the uplink's templates, a placeholder without a value is an error for that message: a
//! command must not go to `chargers//commands`.

use super::message::{check_mqtt_chars, SourceMessage};
use crate::topic::check_mqtt_topic;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Key,
    Tag,
    Topic,
    Property(String),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct TopicTemplate {
    text: String,
    parts: Vec<Part>,
}

impl TryFrom<String> for TopicTemplate {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        TopicTemplate::parse(&text).map_err(|e| format!("bad template \"{text}\": {e}"))
    }
}

impl TopicTemplate {
    pub fn parse(input: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = input;
        while let Some(c) = rest.chars().next() {
            if rest.starts_with("{{") || rest.starts_with("}}") {
                literal.push(c);
                rest = &rest[2..];
            } else if c == '}' {
                let at = input.len() - rest.len();
                return Err(format!(
                    "`}}` at byte {at} closes nothing (write `}}}}` for a literal brace)"
                ));
            } else if c == '{' {
                let at = input.len() - rest.len();
                let end = rest.find('}').ok_or_else(|| {
                    format!("unclosed `{{` at byte {at} (write `{{{{` for a literal brace)")
                })?;
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(placeholder(&rest[1..end])?);
                rest = &rest[end + 1..];
            } else {
                literal.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(TopicTemplate {
            text: input.to_owned(),
            parts,
        })
    }

    /// The template as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn uses_tag(&self) -> bool {
        self.parts.contains(&Part::Tag)
    }

    /// Problems visible without a message: an empty template, wildcards or NUL in its literal
    /// text.
    pub fn check_static(&self) -> Result<(), String> {
        if self.parts.is_empty() {
            return Err("empty".into());
        }
        for part in &self.parts {
            if let Part::Literal(s) = part {
                if s.contains(['+', '#', '\0']) {
                    return Err(format!(
                        "\"{}\": a topic to publish to cannot hold `+`, `#` or NUL",
                        self.text
                    ));
                }
            }
        }
        Ok(())
    }

    /// The topic for `msg`, or why it has none.
    pub fn render(&self, msg: &SourceMessage) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            let value = match part {
                Part::Literal(s) => Some(s.as_str()),
                Part::Key => msg.key.as_deref().filter(|k| !k.is_empty()),
                Part::Tag => msg.tag.as_deref().filter(|t| !t.is_empty()),
                Part::Topic => Some(msg.topic.as_str()),
                Part::Property(name) => msg.header(name).filter(|v| !v.is_empty()),
            };
            match value {
                Some(v) => out.push_str(v),
                None => return Err(format!("{} has no value", describe(part))),
            }
        }
        check_mqtt_topic(&out)
            .and_then(|()| check_mqtt_chars(&out))
            .map_err(|e| format!("topic {out:?}: {e}"))?;
        Ok(out)
    }
}

fn describe(part: &Part) -> String {
    match part {
        Part::Key => "`{key}`: the message".into(),
        Part::Tag => "`{tag}`: the message".into(),
        Part::Property(name) => format!("`{{property.{name}}}`: the message"),
        Part::Literal(_) | Part::Topic => "the template".into(),
    }
}

fn placeholder(name: &str) -> Result<Part, String> {
    Ok(match name {
        "key" => Part::Key,
        "tag" => Part::Tag,
        "topic" => Part::Topic,
        _ => match name
            .strip_prefix("property.")
            .or_else(|| name.strip_prefix("header."))
        {
            Some(p) if !p.is_empty() => Part::Property(p.to_owned()),
            _ => {
                return Err(format!(
                    "unknown placeholder `{{{name}}}` (expected key, tag, topic, property.NAME \
                     or header.NAME)"
                ))
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> SourceMessage {
        SourceMessage {
            key: Some("P-17".into()),
            tag: Some("start".into()),
            headers: vec![("deviceId".into(), "P-9".into())],
            ..SourceMessage::test("commands")
        }
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
        m.key = Some("a/+".into());
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
