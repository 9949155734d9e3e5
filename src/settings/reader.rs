//! Deserializing one section of the config file at a time: `${VAR}` expansion, unknown keys
//! (collected with `serde_ignored`) and type errors become located problems, so that one broken
//! section never hides the problems of the others. Connection and route kinds read their own
//! settings through this too.

use std::borrow::Cow;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use toml::de::{DeValue, ValueDeserializer};

use super::problem::Problem;
use super::source::{field_at, key_span, SourceMap, Value};

/// Reads sections and collects the problems found in them.
pub struct SectionReader<'a, 'e> {
    env: &'e dyn Fn(&str) -> Option<String>,
    pub(crate) problems: Vec<Problem>,
    pub(crate) sources: SourceMap<'a>,
}

impl<'a, 'e> SectionReader<'a, 'e> {
    pub fn new(text: &'a str, env: &'e dyn Fn(&str) -> Option<String>) -> Self {
        SectionReader {
            env,
            problems: Vec::new(),
            sources: SourceMap::new(text),
        }
    }

    /// Deserializes one section, reporting unknown keys and the first type error in it.
    pub fn read<T: DeserializeOwned>(&mut self, label: &str, mut value: Value<'a>) -> Option<T> {
        self.expand_env(label, &mut value, "");
        self.sources.remember(label, &value);
        let copy = value.clone();
        let mut unknown = Vec::new();
        let result = serde_ignored::deserialize(ValueDeserializer::from(value), |path| {
            // An optional table's path has a `?` step for its `Some`: not a key.
            unknown.push(path.to_string().replace(".?", ""))
        });
        for path in unknown {
            let line = key_span(&copy, &path).map(|s| self.sources.line_at(s.start));
            self.problems
                .push(Problem::new(label, Some(&path), "unknown key").at(line));
        }
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                let span = e.span().unwrap_or_else(|| copy.span());
                let field = field_at(&copy, &span);
                let msg = e.message().trim().to_owned();
                let line = self.sources.line_at(span.start);
                self.problems
                    .push(Problem::new(label, field.as_deref(), msg).at(Some(line)));
                None
            }
        }
    }

    /// `text` with its `${VAR}` references expanded; `None` where one cannot be (reading the
    /// section reports why).
    pub fn expanded(&self, text: &str) -> Option<String> {
        expand(text, self.env).ok()
    }

    /// Records a problem at a byte offset of the file.
    pub fn problem(
        &mut self,
        label: &str,
        field: Option<&str>,
        msg: impl Into<String>,
        offset: usize,
    ) {
        let line = Some(self.sources.line_at(offset));
        let field = field.filter(|f| !f.is_empty());
        self.problems.push(Problem::new(label, field, msg).at(line));
    }

    /// Replaces `${VAR}` in every string of `value` with the environment variable's value.
    fn expand_env(&mut self, label: &str, value: &mut Value<'a>, path: &str) {
        let span = value.span();
        match value.get_mut() {
            DeValue::String(s) if s.contains('$') => match expand(s, self.env) {
                Ok(expanded) => *s = Cow::Owned(expanded),
                Err(msg) => self.problem(label, Some(path), msg, span.start),
            },
            DeValue::Table(t) => {
                for (k, v) in t.iter_mut() {
                    let sub = if path.is_empty() {
                        k.get_ref().to_string()
                    } else {
                        format!("{path}.{}", k.get_ref())
                    };
                    self.expand_env(label, v, &sub);
                }
            }
            DeValue::Array(a) => {
                for v in a.iter_mut() {
                    self.expand_env(label, v, path);
                }
            }
            _ => {}
        }
    }
}

/// Expands `${NAME}`; `$${` stands for a literal `${`.
pub fn expand(input: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or("unclosed `${` (write `$${` for a literal `${`)")?;
            let name = &after[..end];
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!(
                    "`${{{name}}}` is not a valid environment variable reference"
                ));
            }
            let value =
                env(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The field names of a struct that derives `Deserialize`, as serde knows them: the keys a
/// section of that type takes. Written by hand (a deserializer that only records the list
/// serde hands it), so that no list of keys is kept beside the struct.
pub fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Fields(Option<&'static [&'static str]>);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field names recorded")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> Deserializer<'de> for &mut Fields {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0 = Some(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut fields = Fields(None);
    let _ = T::deserialize(&mut fields);
    fields.0.unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Two {
        first: u8,
        #[serde(rename = "second_key")]
        second: Option<String>,
    }

    #[test]
    fn struct_fields_lists_the_keys_serde_takes() {
        assert_eq!(struct_fields::<Two>(), ["first", "second_key"]);
    }
}
