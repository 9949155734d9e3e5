//! Where things are in the config file: the TOML parser's spans turned into line numbers for
//! sections and the fields inside them, so that every problem can point at its line.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use toml::de::DeValue;
use toml::Spanned;

/// A TOML value with its position in the file.
pub type Value<'a> = Spanned<DeValue<'a>>;

/// Where each section came from, for pointing validation problems at lines.
pub struct SourceMap<'a> {
    text: &'a str,
    sections: HashMap<String, Value<'a>>,
}

impl<'a> SourceMap<'a> {
    pub fn new(text: &'a str) -> Self {
        SourceMap {
            text,
            sections: HashMap::new(),
        }
    }

    /// Remembers `value` as section `label`; the first value given for a label stays.
    pub fn remember(&mut self, label: &str, value: &Value<'a>) {
        if !self.sections.contains_key(label) {
            self.sections.insert(label.to_owned(), value.clone());
        }
    }

    /// Line of `field` (dotted path) in `section`, else of the section itself.
    pub fn line(&self, section: &str, field: Option<&str>) -> Option<usize> {
        let root = self.sections.get(section)?;
        let span = field
            .and_then(|f| key_span(root, f))
            .unwrap_or_else(|| root.span());
        Some(self.line_at(span.start))
    }

    /// Line of a byte offset.
    pub fn line_at(&self, offset: usize) -> usize {
        line_of(self.text, offset)
    }
}

pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Span of the key at dotted `path` inside `root` (array indices as numbers).
pub fn key_span(root: &Value<'_>, path: &str) -> Option<Range<usize>> {
    let mut node = root;
    let mut span = None;
    for part in path.split('.') {
        match node.get_ref() {
            DeValue::Table(t) => {
                let (k, v) = t.get_key_value(&Spanned::new(0..0, Cow::Borrowed(part)))?;
                span = Some(k.span());
                node = v;
            }
            DeValue::Array(a) => {
                node = a.get(part.parse::<usize>().ok()?)?;
                span = Some(node.span());
            }
            _ => return span,
        }
    }
    span
}

/// Dotted path of the innermost key whose value contains `span`.
pub fn field_at(root: &Value<'_>, span: &Range<usize>) -> Option<String> {
    let DeValue::Table(t) = root.get_ref() else {
        return None;
    };
    for (k, v) in t.iter() {
        let vs = v.span();
        if vs.start <= span.start && span.end <= vs.end.max(vs.start + 1) {
            return Some(match field_at(v, span) {
                Some(inner) => format!("{}.{inner}", k.get_ref()),
                None => k.get_ref().to_string(),
            });
        }
    }
    None
}
