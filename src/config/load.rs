//! Reading a config file: TOML syntax, then each section on its own (`settings::SectionReader`),
//! so that one broken section (or an unknown key) does not hide the problems of the others,
//! then the semantic checks (`validate.rs`). A connection's `type` picks the kind that reads its
//! settings; a route's keys are split between those every route takes, its source's and its
//! sink's, each read by its connection's kind (`load/routes.rs`); `[[downlinks]]` entries are
//! read into routes the same way.

mod downlinks;
mod routes;
mod sources;

use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::model::*;
use super::validate::{validate, Parts};
use crate::connectors::mqtt::Mqtt;
use crate::connectors::{self, Connector, KINDS};
use crate::settings::{line_of, ConfigError, Problem, SectionReader, Value};

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
        let (mut routes, mut downlinks, mut dead_letter) = (None, None, None);
        for (key, value) in root {
            match key.get_ref().as_ref() {
                "mqtt" => self.default_broker(value, &mut parts),
                "connections" => self.connections(value, &mut parts),
                // Read once every connection is known: a route's keys depend on its kinds.
                "routes" => routes = Some(value),
                "downlinks" => downlinks = Some(value),
                // Read once every connection is known, as it may name one.
                "dead_letter" => dead_letter = Some(value),
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
        if let Some(value) = dead_letter {
            self.dead_letter(value, &mut parts);
        }
        if let Some(routes) = routes {
            for (label, item) in self.items(routes, "routes", "route") {
                self.route(&label, item, &mut parts);
            }
        }
        if let Some(downlinks) = downlinks {
            for (label, item) in self.items(downlinks, "downlinks", "downlink") {
                self.downlink(&label, item, &mut parts);
            }
        }
        let top_span = 0..self.text.len();
        let top: Option<TopLevel> = self
            .reader
            .read("top level", Spanned::new(top_span, DeValue::Table(top)));
        self.assemble(parts, top)
    }

    /// `[dead_letter]`: a file or an MQTT topic of its own (`path`, `topic`), or a connection's
    /// sink (`connection` and that kind's keys).
    fn dead_letter(&mut self, value: Value<'a>, parts: &mut Parts) {
        let names_connection = match value.get_ref() {
            DeValue::Table(t) => t.contains_key("connection"),
            _ => false,
        };
        if !names_connection {
            parts.dead_letter = self.reader.read("[dead_letter]", value);
            return;
        }
        parts.dead_letter = Some(DeadLetterConfig::default());
        parts.dead_letter_sink = self.dead_letter_sink("[dead_letter]", "", value, parts);
    }

    /// `[mqtt]`: read as an `mqtt` connection's settings, and kept as the connection
    /// `DEFAULT_BROKER`.
    fn default_broker(&mut self, value: Value<'a>, parts: &mut Parts) {
        parts.saw_mqtt = true;
        let Some(mut mqtt) = self.reader.read::<MqttConfig>("[mqtt]", value) else {
            parts.broken_connections.insert(DEFAULT_BROKER.to_owned());
            return;
        };
        Mqtt::resolve_paths(&mut mqtt, self.base);
        let connection = ConnectionConfig::new::<Mqtt>(mqtt.clone());
        parts
            .connections
            .insert(DEFAULT_BROKER.to_owned(), connection);
        parts.mqtt = Some(mqtt);
    }

    /// The semantic checks over every section read, then the configuration, if it holds.
    fn assemble(&mut self, mut parts: Parts, top: Option<TopLevel>) -> Option<Config> {
        let budget = top.as_ref().and_then(|t| t.memory_budget);
        parts.memory_budget = budget.map(|b| b.0 as usize);
        let problems = validate(&parts, &self.reader.sources);
        self.reader.problems.extend(problems);
        let Parts {
            mqtt,
            connections,
            routes,
            dead_letter,
            dead_letter_sink,
            admin,
            ..
        } = parts;
        let routes = routes
            .into_iter()
            .map(|r| {
                let schema_read = r.keys.schema.as_ref().and_then(|p| std::fs::read(p).ok());
                let dead_letter = match r.dead_letter {
                    None => None,
                    Some((connection, sink)) => Some(DeadLetterSink {
                        connection,
                        sink: sink?,
                    }),
                };
                Some(
                    r.keys
                        .with(r.spelling, r.source?, r.sink?, dead_letter, schema_read),
                )
            })
            .collect::<Option<Vec<_>>>()?;
        let mut config = Config {
            mqtt,
            connections,
            routes,
            dead_letter: {
                let mut d = dead_letter.unwrap_or_default();
                d.sink = match dead_letter_sink {
                    Some((connection, sink)) => Some(DeadLetterSink {
                        connection,
                        sink: sink?,
                    }),
                    None => None,
                };
                d
            },
            admin: admin.unwrap_or_default(),
            shutdown_timeout: top.as_ref()?.shutdown_timeout,
            memory_budget: top
                .as_ref()?
                .memory_budget
                .map_or(crate::flow::DEFAULT_BUDGET, |b| b.0 as usize),
            data_dir: top?.data_dir.unwrap_or_else(default_data_dir),
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
            let label = connection_label(name);
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
            if name == DEFAULT_BROKER {
                let msg = format!(
                    "the name \"{DEFAULT_BROKER}\" is the default broker's ([mqtt]); give this \
                     connection another name"
                );
                self.reader.problem(&label, None, msg, value.span().start);
                continue;
            }
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
}

/// Where state goes when the file does not say: the service's state directory under systemd
/// (`StateDirectory=` sets `STATE_DIRECTORY`), else `data` beside the config file.
fn default_data_dir() -> PathBuf {
    let state = std::env::var_os("STATE_DIRECTORY");
    let first = state
        .as_ref()
        .and_then(|s| s.to_str()?.split(':').next().map(PathBuf::from));
    first
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| "data".into())
}

fn resolve_paths(config: &mut Config, base: &Path) {
    if config.data_dir.is_relative() {
        config.data_dir = base.join(&config.data_dir);
    }
    let dead_letter = &mut config.dead_letter;
    if dead_letter.topic.is_none() && dead_letter.sink.is_none() {
        dead_letter
            .path
            .get_or_insert_with(|| DEFAULT_DEAD_LETTER_PATH.into());
        crate::settings::resolve_relative(base, [&mut dead_letter.path]);
    }
}
