//! Reading a config file: TOML syntax, `${VAR}` expansion, then each section deserialized on its
//! own, so that one broken section (or an unknown key) does not hide the problems of the others.
//! Positions come from the TOML parser's spans and end up as line numbers in every problem.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::model::*;
use super::problem::{ConfigError, Problem};
use super::validate::{validate, Parts};

type Value<'a> = Spanned<DeValue<'a>>;

/// Where each section came from, for pointing validation problems at lines.
pub struct SourceMap<'a> {
    text: &'a str,
    sections: HashMap<String, Value<'a>>,
}

impl SourceMap<'_> {
    /// Line of `field` (dotted path) in `section`, else of the section itself.
    pub fn line(&self, section: &str, field: Option<&str>) -> Option<usize> {
        let root = self.sections.get(section)?;
        let span = field
            .and_then(|f| key_span(root, f))
            .unwrap_or_else(|| root.span());
        Some(line_of(self.text, span.start))
    }
}

/// Reads, parses and validates `path`. Relative paths inside are taken from the file's folder.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            path,
            vec![Problem::new("file", None, format!("cannot read it: {e}"))],
        )
    })?;
    let base = path.parent().map(Path::to_owned).unwrap_or_default();
    parse_str(&text, &base, &|name| std::env::var(name).ok()).map_err(|p| ConfigError::new(path, p))
}

/// Parses and validates a config held in memory; `env` resolves `${VAR}` references.
pub fn parse_str(
    text: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<Problem>> {
    let root = DeTable::parse(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        vec![Problem::new("TOML syntax", None, e.message().trim().to_owned()).at(line)]
    })?;
    let mut loader = Loader {
        text,
        env,
        problems: Vec::new(),
        sources: SourceMap {
            text,
            sections: HashMap::new(),
        },
    };
    let config = loader.sections(root.into_inner(), base_dir);
    match config {
        Some(config) if loader.problems.is_empty() => Ok(config),
        _ => Err(loader.problems),
    }
}

struct Loader<'a, 'e> {
    text: &'a str,
    env: &'e dyn Fn(&str) -> Option<String>,
    problems: Vec<Problem>,
    sources: SourceMap<'a>,
}

impl<'a> Loader<'a, '_> {
    fn sections(&mut self, root: DeTable<'a>, base: &Path) -> Option<Config> {
        let mut parts = Parts::default();
        let mut top = DeTable::new();
        let mut saw_mqtt = false;
        for (key, value) in root {
            match key.get_ref().as_ref() {
                "mqtt" => {
                    saw_mqtt = true;
                    parts.mqtt = self.section::<MqttConfig>("[mqtt]", value);
                }
                "connections" => self.connections(value, &mut parts),
                "routes" => self.routes(value, &mut parts),
                "dead_letter" => parts.dead_letter = self.section("[dead_letter]", value),
                "admin" => parts.admin = self.section("[admin]", value),
                _ => {
                    top.insert(key, value);
                }
            }
        }
        let top_span = 0..self.text.len();
        let top: Option<TopLevel> =
            self.section("top level", Spanned::new(top_span, DeValue::Table(top)));
        if !saw_mqtt {
            let msg = "missing: the bridge needs a broker to consume from";
            self.problems.push(Problem::new("[mqtt]", None, msg));
        }
        if let Some(mqtt) = &mut parts.mqtt {
            self.read_password_file(mqtt, base);
        }
        self.problems.extend(validate(&parts, &self.sources));
        let config = Config {
            mqtt: parts.mqtt?,
            connections: parts.connections,
            routes: parts.routes,
            dead_letter: parts.dead_letter.unwrap_or_default(),
            admin: parts.admin.unwrap_or_default(),
            shutdown_timeout: top?.shutdown_timeout,
        };
        Some(resolve_paths(config, base))
    }

    fn connections(&mut self, value: Value<'a>, parts: &mut Parts) {
        let Some(table) = self.table("[connections]", value) else {
            return;
        };
        for (name, value) in table {
            let name = name.into_inner().into_owned();
            let label = format!("connection \"{name}\"");
            match self.connection(&label, value) {
                Some(c) => {
                    parts.connections.insert(name, c);
                }
                None => {
                    parts.broken_connections.insert(name);
                }
            }
        }
    }

    fn connection(&mut self, label: &str, mut value: Value<'a>) -> Option<ConnectionConfig> {
        let span = value.span();
        let DeValue::Table(table) = value.get_mut() else {
            self.problem(label, None, "must be a table", span.start);
            return None;
        };
        let kind = table.remove(&Spanned::new(0..0, Cow::Borrowed("type")));
        let kind = kind
            .as_ref()
            .and_then(|k| k.get_ref().as_str().map(|s| (s, k.span())));
        match kind {
            Some(("kafka", _)) => self.section(label, value).map(ConnectionConfig::Kafka),
            Some(("file", _)) => self.section(label, value).map(ConnectionConfig::File),
            Some((other, span)) => {
                let msg =
                    format!("unknown connection type \"{other}\" (expected \"kafka\" or \"file\")");
                self.problem(label, Some("type"), msg, span.start);
                None
            }
            None => {
                self.problem(
                    label,
                    Some("type"),
                    "missing (\"kafka\" or \"file\")",
                    span.start,
                );
                None
            }
        }
    }

    fn routes(&mut self, value: Value<'a>, parts: &mut Parts) {
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            let msg = "must be an array of tables ([[routes]])";
            self.problem("[[routes]]", None, msg, span.start);
            return;
        };
        for (i, item) in items.into_iter().enumerate() {
            let name = item
                .get_ref()
                .get("name")
                .and_then(|n| n.get_ref().as_str());
            let label = match name {
                Some(name) => format!("route \"{name}\""),
                None => format!("route #{}", i + 1),
            };
            match self.section(&label, item) {
                Some(route) => parts.routes.push(route),
                None => parts.broken_routes += 1,
            }
        }
    }

    fn table(&mut self, label: &str, value: Value<'a>) -> Option<DeTable<'a>> {
        let span = value.span();
        match value.into_inner() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.problem(label, None, "must be a table", span.start);
                None
            }
        }
    }

    /// Deserializes one section, reporting unknown keys and the first type error in it.
    fn section<T: DeserializeOwned>(&mut self, label: &str, mut value: Value<'a>) -> Option<T> {
        self.expand_env(label, &mut value, "");
        let copy = value.clone();
        self.sources
            .sections
            .entry(label.to_owned())
            .or_insert_with(|| copy.clone());
        let mut unknown = Vec::new();
        let result = serde_ignored::deserialize(ValueDeserializer::from(value), |path| {
            unknown.push(path.to_string())
        });
        for path in unknown {
            let line = key_span(&copy, &path).map(|s| line_of(self.text, s.start));
            self.problems
                .push(Problem::new(label, Some(&path), "unknown key").at(line));
        }
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                let span = e.span().unwrap_or_else(|| copy.span());
                let field = field_at(&copy, &span);
                let msg = e.message().trim().to_owned();
                self.problems.push(
                    Problem::new(label, field.as_deref(), msg)
                        .at(Some(line_of(self.text, span.start))),
                );
                None
            }
        }
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
                    let sub = join(path, k.get_ref());
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

    fn read_password_file(&mut self, mqtt: &mut MqttConfig, base: &Path) {
        let Some(file) = &mqtt.password_file else {
            return;
        };
        let file = base.join(file);
        match std::fs::read_to_string(&file) {
            Ok(text) => mqtt.password = Some(Secret::new(text.trim_end_matches(['\r', '\n']))),
            Err(e) => {
                let line = self.sources.line("[mqtt]", Some("password_file"));
                let msg = format!("cannot read {}: {e}", file.display());
                self.problems
                    .push(Problem::new("[mqtt]", Some("password_file"), msg).at(line));
            }
        }
    }

    fn problem(&mut self, label: &str, field: Option<&str>, msg: impl Into<String>, offset: usize) {
        let line = Some(line_of(self.text, offset));
        let field = field.filter(|f| !f.is_empty());
        self.problems.push(Problem::new(label, field, msg).at(line));
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

fn resolve_paths(mut config: Config, base: &Path) -> Config {
    let join = |p: &mut PathBuf| {
        if p.is_relative() && p.as_os_str() != "-" {
            *p = base.join(&*p);
        }
    };
    if let Some(tls) = &mut config.mqtt.tls {
        [&mut tls.ca_file, &mut tls.cert_file, &mut tls.key_file]
            .into_iter()
            .flatten()
            .for_each(join);
    }
    for conn in config.connections.values_mut() {
        if let ConnectionConfig::File(f) = conn {
            join(&mut f.path);
        }
    }
    if config.dead_letter.topic.is_none() {
        let path = config
            .dead_letter
            .path
            .get_or_insert_with(|| DEFAULT_DEAD_LETTER_PATH.into());
        join(path);
    }
    config
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Span of the key at dotted `path` inside `root` (array indices as numbers).
fn key_span(root: &Value<'_>, path: &str) -> Option<Range<usize>> {
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
fn field_at(root: &Value<'_>, span: &Range<usize>) -> Option<String> {
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
