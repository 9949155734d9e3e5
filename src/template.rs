//! Templates for sink-side names (Kafka topics and record keys, ...): literal text with placeholders
//! `{topic}`, `{topic.N}` (Nth level, 1-based), `{user.NAME}` (first user property NAME),
//! `{message_id}` and `{client_id}`. `{{` and `}}` stand for literal braces.
//! A placeholder with no value for a message (a missing level or property) renders empty.
//! A template is parsed once, when the config file is read (`Deserialize` takes the text).

use std::fmt::Write;

use crate::message::Message;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Topic,
    TopicLevel(usize),
    User(String),
    MessageId,
    ClientId,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Template {
    parts: Vec<Part>,
}

/// A template that does not parse, with its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad template \"{text}\": {error}")]
pub struct BadTemplate {
    pub text: String,
    pub error: TemplateError,
}

impl TryFrom<String> for Template {
    type Error = BadTemplate;
    fn try_from(text: String) -> Result<Self, BadTemplate> {
        Template::parse(&text).map_err(|error| BadTemplate { text, error })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed `{{` at byte {0} (write `{{{{` for a literal brace)")]
    Unclosed(usize),
    #[error("`}}` at byte {0} closes nothing (write `}}}}` for a literal brace)")]
    StrayClose(usize),
    #[error("unknown placeholder `{{{0}}}` (expected topic, topic.N, user.NAME, message_id or client_id)")]
    Unknown(String),
    #[error("`{{topic.{0}}}`: levels count from 1")]
    BadLevel(String),
}

impl Template {
    pub fn parse(input: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = input.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(TemplateError::StrayClose(at)),
                '{' => {
                    let end = input[at..].find('}').ok_or(TemplateError::Unclosed(at))? + at;
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(placeholder(&input[at + 1..end])?);
                    while chars.peek().is_some_and(|p| p.0 <= end) {
                        chars.next();
                    }
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts })
    }

    /// `{topic}`: the whole MQTT topic.
    pub fn topic() -> Self {
        Template {
            parts: vec![Part::Topic],
        }
    }

    /// The template's text when it has no placeholders.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Literal(s)] => Some(s),
            _ => None,
        }
    }

    pub fn render(&self, msg: &Message) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Topic => out.push_str(&msg.topic),
                Part::TopicLevel(n) => out.push_str(msg.topic.split('/').nth(n - 1).unwrap_or("")),
                Part::User(name) => out.push_str(msg.user_property(name).unwrap_or("")),
                Part::MessageId => {
                    let _ = write!(out, "{}", msg.id);
                }
                Part::ClientId => out.push_str(msg.publisher.client_id.as_deref().unwrap_or("")),
            }
        }
        out
    }
}

fn placeholder(name: &str) -> Result<Part, TemplateError> {
    Ok(match name {
        "topic" => Part::Topic,
        "message_id" => Part::MessageId,
        "client_id" => Part::ClientId,
        _ => {
            if let Some(level) = name.strip_prefix("topic.") {
                match level.parse::<usize>() {
                    Ok(n) if n >= 1 => Part::TopicLevel(n),
                    _ => return Err(TemplateError::BadLevel(level.to_owned())),
                }
            } else if let Some(prop) = name.strip_prefix("user.").filter(|p| !p.is_empty()) {
                Part::User(prop.to_owned())
            } else {
                return Err(TemplateError::Unknown(name.to_owned()));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::tests::sample;

    #[test]
    fn renders_every_placeholder() {
        let t = Template::parse("x-{topic.2}-{user.plate}-{client_id}-{{lit}}").unwrap();
        let msg = sample("city/berlin/vehicles/7");
        assert_eq!(t.render(&msg), "x-berlin-B-AB-123-car-7-{lit}");
        assert_eq!(
            Template::parse("{topic}").unwrap().render(&msg),
            "city/berlin/vehicles/7"
        );
        assert_eq!(Template::parse("{topic.9}").unwrap().render(&msg), "");
        let id = Template::parse("{message_id}").unwrap().render(&msg);
        assert_eq!(id, msg.id.to_string());
    }

    #[test]
    fn literal_templates_are_known_as_such() {
        assert_eq!(
            Template::parse("events").unwrap().as_literal(),
            Some("events")
        );
        assert_eq!(Template::parse("e-{topic}").unwrap().as_literal(), None);
    }

    #[test]
    fn rejects_malformed_templates() {
        assert_eq!(Template::parse("a-{topic"), Err(TemplateError::Unclosed(2)));
        assert_eq!(Template::parse("a}"), Err(TemplateError::StrayClose(1)));
        assert_eq!(
            Template::parse("{plate}"),
            Err(TemplateError::Unknown("plate".into()))
        );
        assert_eq!(
            Template::parse("{topic.0}"),
            Err(TemplateError::BadLevel("0".into()))
        );
        assert_eq!(
            Template::parse("{user.}"),
            Err(TemplateError::Unknown("user.".into()))
        );
    }
}

#[cfg(test)]
mod any_input {
    use proptest::prelude::*;

    use super::*;
    use crate::message::tests::any_message;

    /// Text made mostly of what templates are made of, so that placeholders come up often.
    fn template_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("{".to_owned()),
            Just("}".to_owned()),
            Just("{{".to_owned()),
            Just("topic".to_owned()),
            Just("topic.".to_owned()),
            Just("user.".to_owned()),
            Just("message_id".to_owned()),
            Just("client_id".to_owned()),
            "[0-9]{1,3}",
            any::<String>(),
        ];
        proptest::collection::vec(piece, 0..8).prop_map(|p| p.concat())
    }

    proptest! {
        /// Any text parses or is refused with a reason; what parses renders for any message,
        /// and a literal template renders as itself.
        #[test]
        fn any_text_parses_or_is_refused_and_renders_for_any_message(
            text in template_text(),
            msg in any_message(),
        ) {
            if let Ok(template) = Template::parse(&text) {
                let rendered = template.render(&msg);
                if let Some(literal) = template.as_literal() {
                    prop_assert_eq!(rendered, literal);
                }
            }
        }
    }
}
