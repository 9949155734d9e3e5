//! Templates for the names a flow builds per message (Kafka topics and record keys, RocketMQ
//! topics, tags and keys, a downlink's MQTT topic): literal text with placeholders, `{{` and `}}`
//! for literal braces. One grammar; which placeholders a template may use depends on what the
//! messages it is rendered for carry (`Vocabulary`):
//! - an MQTT message: `{topic}`, `{topic.N}` (Nth level, 1-based), `{user.NAME}` (first user
//!   property NAME), `{message_id}` and `{client_id}`;
//! - a Kafka record or RocketMQ message: `{key}`, `{tag}`, `{topic}`, `{topic.N}` and
//!   `{property.NAME}` / `{header.NAME}`.
//!
//! What a placeholder without a value becomes is the caller's explicit choice: `render` leaves
//! it empty (a record key or a RocketMQ tag may well be empty), `render_strict` refuses the
//! message (a command must not go to `chargers//commands`). A template is parsed once, when
//! the config file is read.

use std::fmt::Write;

use crate::message::Message;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Topic,
    TopicLevel(usize),
    /// A user property, header or RocketMQ property, by name.
    Property(String),
    Key,
    Tag,
    MessageId,
    ClientId,
}

/// Which placeholders a template may use: what the messages it is rendered for carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vocabulary {
    Mqtt,
    Record,
}

impl Vocabulary {
    fn expected(self) -> &'static str {
        match self {
            Vocabulary::Mqtt => "topic, topic.N, user.NAME, message_id or client_id",
            Vocabulary::Record => "key, tag, topic, topic.N, property.NAME or header.NAME",
        }
    }
}

/// What a message offers a template; what it lacks renders as missing.
pub trait Values {
    fn topic(&self) -> &str;
    /// The first user property, header or property called `name`.
    fn property(&self, name: &str) -> Option<&str>;
    fn key(&self) -> Option<&str> {
        None
    }
    fn tag(&self) -> Option<&str> {
        None
    }
    fn message_id(&self) -> Option<uuid::Uuid> {
        None
    }
    fn client_id(&self) -> Option<&str> {
        None
    }
}

impl Values for Message {
    fn topic(&self) -> &str {
        &self.topic
    }
    fn property(&self, name: &str) -> Option<&str> {
        self.user_property(name)
    }
    fn message_id(&self) -> Option<uuid::Uuid> {
        Some(self.id)
    }
    fn client_id(&self) -> Option<&str> {
        self.publisher.client_id.as_deref()
    }
    fn key(&self) -> Option<&str> {
        self.origin.as_ref().and_then(|o| o.key.as_deref())
    }
    fn tag(&self) -> Option<&str> {
        self.origin.as_ref().and_then(|o| o.tag.as_deref())
    }
}

/// A parsed template, for MQTT messages when read from a config file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

/// A template that does not parse, with its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad template \"{text}\": {error}")]
pub struct BadTemplate {
    pub text: String,
    pub error: TemplateError,
}

impl serde::Serialize for Template {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
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
    #[error("unknown placeholder `{{{0}}}` (expected {exp})", exp = .1.expected())]
    Unknown(String, Vocabulary),
    #[error("`{{topic.{0}}}`: levels count from 1")]
    BadLevel(String),
}

/// A placeholder without a value for a message, under `render_strict`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` has no value for the message")]
pub struct NoValue(String);

impl Template {
    /// A template over MQTT messages.
    pub fn parse(input: &str) -> Result<Self, TemplateError> {
        Self::parse_for(input, Vocabulary::Mqtt)
    }

    pub fn parse_for(input: &str, vocabulary: Vocabulary) -> Result<Self, TemplateError> {
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
                    parts.push(placeholder(&input[at + 1..end], vocabulary)?);
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
        Ok(Template {
            text: input.to_owned(),
            parts,
        })
    }

    /// `{topic}`: the whole topic.
    pub fn topic() -> Self {
        Template {
            text: "{topic}".into(),
            parts: vec![Part::Topic],
        }
    }

    /// The template as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The template's text when it has no placeholders.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// Its literal pieces, for checks that need no message.
    pub fn literals(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Literal(s) => Some(s.as_str()),
            _ => None,
        })
    }

    pub fn uses_tag(&self) -> bool {
        self.parts.contains(&Part::Tag)
    }

    /// The text for `msg`; a placeholder without a value renders empty.
    pub fn render(&self, msg: &impl Values) -> String {
        let mut out = String::new();
        for part in &self.parts {
            append(part, msg, &mut out);
        }
        out
    }

    /// The text for `msg`; a placeholder without a value, or with an empty one, refuses it.
    pub fn render_strict(&self, msg: &impl Values) -> Result<String, NoValue> {
        let mut out = String::new();
        for part in &self.parts {
            let before = out.len();
            if !append(part, msg, &mut out) || out.len() == before {
                return Err(NoValue(describe(part)));
            }
        }
        Ok(out)
    }
}

/// Appends `part`'s value for `msg` to `out`; false when it has none.
fn append(part: &Part, msg: &impl Values, out: &mut String) -> bool {
    let value = match part {
        Part::Literal(s) => Some(s.as_str()),
        Part::Topic => Some(msg.topic()),
        Part::TopicLevel(n) => msg.topic().split('/').nth(n - 1),
        Part::Property(name) => msg.property(name),
        Part::Key => msg.key(),
        Part::Tag => msg.tag(),
        Part::ClientId => msg.client_id(),
        Part::MessageId => {
            return msg.message_id().map(|id| write!(out, "{id}")).is_some();
        }
    };
    value.map(|v| out.push_str(v)).is_some()
}

/// How a placeholder was written, for errors.
fn describe(part: &Part) -> String {
    let mut out = String::new();
    let _ = match part {
        Part::Literal(s) => write!(out, "{s}"),
        Part::Topic => write!(out, "{{topic}}"),
        Part::TopicLevel(n) => write!(out, "{{topic.{n}}}"),
        Part::Property(name) => write!(out, "{{property.{name}}}"),
        Part::Key => write!(out, "{{key}}"),
        Part::Tag => write!(out, "{{tag}}"),
        Part::MessageId => write!(out, "{{message_id}}"),
        Part::ClientId => write!(out, "{{client_id}}"),
    };
    out
}

fn placeholder(name: &str, vocabulary: Vocabulary) -> Result<Part, TemplateError> {
    use Vocabulary::{Mqtt, Record};
    let unknown = || TemplateError::Unknown(name.to_owned(), vocabulary);
    let named = |prefix: &str| name.strip_prefix(prefix).filter(|p| !p.is_empty());
    Ok(match (name, vocabulary) {
        ("topic", _) => Part::Topic,
        ("message_id", Mqtt) => Part::MessageId,
        ("client_id", Mqtt) => Part::ClientId,
        ("key", Record) => Part::Key,
        ("tag", Record) => Part::Tag,
        _ => {
            if let Some(level) = name.strip_prefix("topic.") {
                match level.parse::<usize>() {
                    Ok(n) if n >= 1 => Part::TopicLevel(n),
                    _ => return Err(TemplateError::BadLevel(level.to_owned())),
                }
            } else if let (Some(prop), Mqtt) = (named("user."), vocabulary) {
                Part::Property(prop.to_owned())
            } else if let (Some(prop), Record) =
                (named("property.").or_else(|| named("header.")), vocabulary)
            {
                Part::Property(prop.to_owned())
            } else {
                return Err(unknown());
            }
        }
    })
}

#[cfg(test)]
mod tests;
