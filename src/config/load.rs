//! Reading a config file: TOML syntax, then each section on its own (`reader.rs`), so that one
//! broken section (or an unknown key) does not hide the problems of the others, then the
//! semantic checks (`validate.rs`). A connection's `type` picks the kind that reads its
//! settings; a route's keys are split between those every route takes and those of its
//! connection's kind (`load/routes.rs`).

mod routes;

use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::model::*;
use super::validate::{validate, Parts};
use crate::connectors::{self, KINDS};
use crate::downlinks::DownlinkConfig;
use crate::settings::Secret;
use crate::settings::SectionReader;
use crate::settings::{line_of, Value};
use crate::settings::{ConfigError, Problem};

/// Reads, parses and validates `path`. Relative paths inside are taken from the file's folder.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            path,
            vec![Problem::new("file", None, format!("cannot read it: {e}"))],
        )
    })?;
    let base = path.parent().map(Path::to_owned).unwrap_or_default();
    let mut config = parse_str(&text, &base, &|name| std::env::var(name).ok())
        .map_err(|p| ConfigError::new(path, p))?;
    config.source = Some(path.to_owned());
    Ok(config)
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
        base: base_dir,
        reader: SectionReader::new(text, env),
    };
    let config = loader.sections(root.into_inner());
    let mut problems = loader.reader.problems;
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        None if problems.is_empty() => {
            // Every part that failed reports why; reaching this is a bug of the loader's.
            let msg = "the configuration could not be assembled, though no problem was found \
                       (please report this)";
            problems.push(Problem::new("file", None, msg));
            Err(problems)
        }
        _ => Err(problems),
    }
}

struct Loader<'a, 'e> {
    text: &'a str,
    base: &'a Path,
    reader: SectionReader<'a, 'e>,
}

impl<'a> Loader<'a, '_> {
    fn sections(&mut self, root: DeTable<'a>) -> Option<Config> {
        let mut parts = Parts::default();
        let mut top = DeTable::new();
        let mut routes = None;
        let mut saw_mqtt = false;
        for (key, value) in root {
            match key.get_ref().as_ref() {
                "mqtt" => {
                    saw_mqtt = true;
                    parts.mqtt = self.reader.read::<MqttConfig>("[mqtt]", value);
                }
                "connections" => self.connections(value, &mut parts),
                // Read once every connection is known: a route's keys depend on its kind.
                "routes" => routes = Some(value),
                "downlinks" => self.downlinks(value, &mut parts),
                "dead_letter" => parts.dead_letter = self.reader.read("[dead_letter]", value),
                "admin" => {
                    parts.admin = self
                        .reader
                        .read("[admin]", value)
                        .map(|mut a: AdminConfig| {
                            crate::settings::resolve_relative(self.base, [&mut a.token_file]);
                            a
                        })
                }
                _ => {
                    top.insert(key, value);
                }
            }
        }
        if let Some(routes) = routes {
            self.routes(routes, &mut parts);
        }
        let top_span = 0..self.text.len();
        let top: Option<TopLevel> = self
            .reader
            .read("top level", Spanned::new(top_span, DeValue::Table(top)));
        if !saw_mqtt {
            let msg = "missing: the bridge needs a broker to consume from";
            self.reader.problems.push(Problem::new("[mqtt]", None, msg));
        }
        if let Some(mqtt) = &mut parts.mqtt {
            self.read_password_file(mqtt);
        }
        self.assemble(parts, top)
    }

    /// The semantic checks over every section read, then the configuration, if it holds.
    fn assemble(&mut self, mut parts: Parts, top: Option<TopLevel>) -> Option<Config> {
        let problems = validate(&parts, &self.reader.sources);
        self.reader.problems.extend(problems);
        let routes = parts
            .routes
            .into_iter()
            .map(|(route, sink)| Some(route.with_sink(sink?)))
            .collect::<Option<Vec<_>>>()?;
        let mut config = Config {
            mqtt: parts.mqtt?,
            connections: parts.connections,
            routes,
            downlinks: std::mem::take(&mut parts.downlinks),
            dead_letter: parts.dead_letter.unwrap_or_default(),
            admin: parts.admin.unwrap_or_default(),
            shutdown_timeout: top?.shutdown_timeout,
            source: None,
        };
        resolve_paths(&mut config, self.base);
        self.check_shared_files(&config);
        Some(config)
    }

    /// Two writers on one file would each cut the other's lines back after a failed write:
    /// every file the bridge writes has one owner.
    fn check_shared_files(&mut self, config: &Config) {
        let mut owners: Vec<(PathBuf, String)> = Vec::new();
        let dead_letter = config.dead_letter.path.iter().map(|p| {
            let label = "[dead_letter]".to_owned();
            (p.clone(), label)
        });
        let connections = config.connections.iter().flat_map(|(name, c)| {
            let label = format!("connection \"{name}\"");
            c.files().into_iter().map(move |p| (p, label.clone()))
        });
        for (path, label) in connections.chain(dead_letter) {
            if let Some((_, first)) = owners.iter().find(|(p, _)| *p == path) {
                let msg = format!(
                    "{} is written by {first} too; give each its own file",
                    path.display()
                );
                let line = self.reader.sources.line(&label, Some("path"));
                let problem = Problem::new(&label, Some("path"), msg).at(line);
                self.reader.problems.push(problem);
            } else {
                owners.push((path, label));
            }
        }
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
            self.reader
                .problem(label, None, "must be a table", span.start);
            return None;
        };
        let known = KINDS
            .iter()
            .map(|k| format!("\"{}\"", k.name()))
            .collect::<Vec<_>>()
            .join(", ");
        let kind = table.remove(&Spanned::new(0..0, "type".into()));
        let Some(kind) = kind else {
            let msg = format!("missing (one of {known})");
            self.reader.problem(label, Some("type"), msg, span.start);
            return None;
        };
        let name = kind.get_ref().as_str().unwrap_or_default();
        let Some(found) = connectors::kind(name) else {
            let msg = format!("unknown connection type \"{name}\" (expected one of {known})");
            self.reader
                .problem(label, Some("type"), msg, kind.span().start);
            return None;
        };
        found.read_connection(&mut self.reader, label, value, self.base)
    }

    fn routes(&mut self, value: Value<'a>, parts: &mut Parts) {
        for (label, item) in self.items(value, "routes", "route") {
            self.route(&label, item, parts);
        }
    }

    fn downlinks(&mut self, value: Value<'a>, parts: &mut Parts) {
        for (label, item) in self.items(value, "downlinks", "downlink") {
            match self.reader.read::<DownlinkConfig>(&label, item) {
                Some(mut d) => {
                    crate::settings::resolve_relative(self.base, [&mut d.schema]);
                    d.schema_read = d.schema.as_ref().and_then(|p| std::fs::read(p).ok());
                    parts.downlinks.push(d)
                }
                None => parts.broken_downlinks += 1,
            }
        }
    }

    /// The tables of an array of tables (`[[routes]]`), each labelled by its name
    /// (`route "traffic"`) or, without one, its place (`route #2`).
    fn items(&mut self, value: Value<'a>, key: &str, what: &str) -> Vec<(String, Value<'a>)> {
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            let msg = format!("must be an array of tables ([[{key}]])");
            self.reader
                .problem(&format!("[[{key}]]"), None, msg, span.start);
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let name = item
                .get_ref()
                .get("name")
                .and_then(|n| n.get_ref().as_str());
            let label = match name {
                Some(name) => format!("{what} \"{name}\""),
                None => format!("{what} #{}", i + 1),
            };
            out.push((label, item));
        }
        out
    }

    fn table(&mut self, label: &str, value: Value<'a>) -> Option<DeTable<'a>> {
        let span = value.span();
        match value.into_inner() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.reader
                    .problem(label, None, "must be a table", span.start);
                None
            }
        }
    }

    fn read_password_file(&mut self, mqtt: &mut MqttConfig) {
        let Some(file) = &mqtt.password_file else {
            return;
        };
        let file = self.base.join(file);
        match std::fs::read_to_string(&file) {
            Ok(text) => mqtt.password = Some(Secret::new(text.trim_end_matches(['\r', '\n']))),
            Err(e) => {
                let line = self.reader.sources.line("[mqtt]", Some("password_file"));
                let msg = format!("cannot read {}: {e}", file.display());
                self.reader
                    .problems
                    .push(Problem::new("[mqtt]", Some("password_file"), msg).at(line));
            }
        }
    }
}

fn resolve_paths(config: &mut Config, base: &Path) {
    if let Some(tls) = &mut config.mqtt.tls {
        crate::settings::resolve_relative(
            base,
            [&mut tls.ca_file, &mut tls.cert_file, &mut tls.key_file],
        );
    }
    let dead_letter = &mut config.dead_letter;
    if dead_letter.topic.is_none() {
        dead_letter
            .path
            .get_or_insert_with(|| DEFAULT_DEAD_LETTER_PATH.into());
        crate::settings::resolve_relative(base, [&mut dead_letter.path]);
    }
}
