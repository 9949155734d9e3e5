//! Rules: a flow's optional `schema` (a JSON Schema file), `where` (a condition) and `transform`
//! (a program), applied in that order to each message as the pipeline takes it, before
//! batching. The programs are written in the Vector Remap Language (crate `vrl`): compiled and
//! type-checked once when the configuration is read, with the standard library's functions
//! except those that reach the network, the environment or the system (the `stdlib-base`
//! build leaves them out; `LEFT_OUT` names two more). What a rule sees and may set is in
//! `event`.
//!
//! What becomes of a message:
//! - it passes: delivered, reshaped by the `transform` where there is one;
//! - `where` is false, or the `transform` left `null` or an empty array: filtered, that is
//!   acknowledged and not delivered;
//! - the `transform` left an array: each element is a message of its own, all of them in the
//!   source message's place; the source message is acknowledged once all are settled;
//! - the payload does not match the schema (`schema_invalid`), or a program failed on it, did
//!   not give a boolean (`where`) or left something that is not a message
//!   (`transform_error`): dead-lettered with the error; the flow goes on.

mod event;
pub mod sample;
mod schema;

use std::path::PathBuf;

use vrl::compiler::runtime::Runtime;
use vrl::compiler::state::ExternalEnv;
use vrl::compiler::{CompileConfig, Program, TargetValue, TimeZone};
use vrl::value::{Kind, Secrets, Value};

use crate::flow::{Retry, SinkError};
use crate::message::Message;
use event::Changes;
use schema::Schema;

/// A flow's rules as written in its configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleSpec {
    pub filter: Option<String>,
    pub transform: Option<String>,
    pub schema: Option<PathBuf>,
}

/// A rule's problem at load: the key (`where`, `transform`, `schema`) and what is wrong.
pub type RuleProblem = (&'static str, String);

impl RuleSpec {
    /// The compiled rules, `None` when there are none; every problem when they do not compile.
    pub fn compile(&self) -> Result<Option<Rules>, Vec<RuleProblem>> {
        if self.filter.is_none() && self.transform.is_none() && self.schema.is_none() {
            return Ok(None);
        }
        let mut problems = Vec::new();
        let schema = self.schema.as_ref().and_then(|path| {
            Schema::read(path)
                .map_err(|e| problems.push(("schema", e)))
                .ok()
        });
        let filter = self.filter.as_deref().and_then(|source| {
            compile(source, true)
                .map_err(|e| problems.push(("where", e)))
                .ok()
        });
        let transform = self.transform.as_deref().and_then(|source| {
            compile(source, false)
                .map_err(|e| problems.push(("transform", e)))
                .ok()
        });
        if !problems.is_empty() {
            return Err(problems);
        }
        let sources = [&self.filter, &self.transform];
        let touches = |(source, program): (&Option<String>, &Option<Program>)| matches!((source, program), (Some(s), Some(p)) if touches_payload(s, p));
        let reads_payload = sources.into_iter().zip([&filter, &transform]).any(touches);
        let writes_payload = touches((&self.transform, &transform));
        Ok(Some(Rules {
            schema,
            filter,
            transform,
            reads_payload,
            writes_payload,
        }))
    }
}

/// A flow's compiled rules, shared by its pipeline.
pub struct Rules {
    schema: Option<Schema>,
    filter: Option<Program>,
    transform: Option<Program>,
    /// A program may read the payload: the event carries it.
    reads_payload: bool,
    /// The transform may change the payload: it is taken back from what it left. When not,
    /// the payload goes on as it came, byte for byte.
    writes_payload: bool,
}

/// What the rules made of a message.
pub enum Applied {
    One(Message),
    /// A `transform` split it: each in its place, in order.
    Many(Vec<Message>),
    /// Acknowledged, not delivered.
    Filtered,
    /// Dead-lettered with the error, not delivered.
    Refused(Message, SinkError),
}

/// Why a rule refused a message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refusal(String);

fn refused(kind: &'static str, error: String) -> SinkError {
    SinkError::new(kind, Retry::Permanent, Refusal(error))
}

impl Rules {
    pub fn apply(&self, msg: Message) -> Applied {
        let json = self
            .schema
            .as_ref()
            .map(|_| serde_json::from_slice::<serde_json::Value>(&msg.payload).ok());
        if let (Some(schema), Some(json)) = (&self.schema, &json) {
            if let Err(e) = schema.check(json.as_ref()) {
                let error = refused("schema_invalid", format!("schema: {e}"));
                return Applied::Refused(msg, error);
            }
        }
        if self.filter.is_none() && self.transform.is_none() {
            return Applied::One(msg);
        }
        let payload = match (self.reads_payload, json) {
            (false, _) => None,
            (true, Some(json)) => Some(event::payload(&msg, json.map(Value::from))),
            (true, None) => {
                let json = serde_json::from_slice::<Value>(&msg.payload).ok();
                Some(event::payload(&msg, json))
            }
        };
        let mut target = TargetValue {
            value: event::of(&msg, payload),
            metadata: Value::Object(Default::default()),
            secrets: Secrets::default(),
        };
        if let Some(filter) = &self.filter {
            match run(filter, &mut target) {
                Ok(Value::Boolean(true)) => {}
                Ok(Value::Boolean(false)) => return Applied::Filtered,
                Ok(other) => {
                    return rule_error(msg, "where", format!("gave {other}, not a boolean"))
                }
                Err(e) => return rule_error(msg, "where", e),
            }
        }
        let Some(transform) = &self.transform else {
            return Applied::One(msg);
        };
        match run(transform, &mut target) {
            Ok(_) => made(msg, target.value, self.writes_payload),
            Err(e) => rule_error(msg, "transform", e),
        }
    }
}

/// `msg` refused with what its `key`'s program did (`transform_error`).
fn rule_error(msg: Message, key: &str, e: String) -> Applied {
    Applied::Refused(msg, refused("transform_error", format!("{key}: {e}")))
}

/// What a transform's output `value` makes of `msg`: nothing (`null`, `[]`), the messages of
/// an array, or the one message it describes.
fn made(msg: Message, value: Value, payload: bool) -> Applied {
    match value {
        Value::Null => Applied::Filtered,
        Value::Array(events) if events.is_empty() => Applied::Filtered,
        Value::Array(events) => {
            let parts = events.into_iter().map(|e| Changes::of(e, payload));
            match parts.collect::<Result<Vec<_>, _>>() {
                Ok(parts) => {
                    Applied::Many(parts.into_iter().map(|c| c.applied(msg.clone())).collect())
                }
                Err(e) => rule_error(msg, "transform", e),
            }
        }
        // One message, the common case: the source message itself, changed.
        one => match Changes::of(one, payload) {
            Ok(changes) => Applied::One(changes.applied(msg)),
            Err(e) => rule_error(msg, "transform", e),
        },
    }
}

/// Runs `program` over `target`; the value it ends with, or why it failed.
fn run(program: &Program, target: &mut TargetValue) -> Result<Value, String> {
    Runtime::default()
        .resolve(target, program, &TimeZone::default())
        .map_err(|e| e.to_string())
}

/// Functions of `stdlib-base` left out besides those the build leaves out: `parse_groks` opens
/// files named in its `alias_sources` when it is compiled, and `log` writes to the bridge's
/// log (where payloads do not belong).
const LEFT_OUT: [&str; 2] = ["parse_groks", "log"];

/// The functions a program may call.
fn functions() -> Vec<Box<dyn vrl::compiler::Function>> {
    let mut all = vrl::stdlib::all();
    all.retain(|f| !LEFT_OUT.contains(&f.identifier()));
    all
}

/// Whether `program` may read or change the payload: it names it, or it reaches the whole
/// event (`.`), as `merge(., ...)` or `x = .` do.
fn touches_payload(source: &str, program: &Program) -> bool {
    let info = program.info();
    let whole = |p: &vrl::path::OwnedTargetPath| {
        p.prefix == vrl::path::PathPrefix::Event && p.path.is_root()
    };
    source.contains("payload")
        || info.target_queries.iter().any(whole)
        || info.target_assignments.iter().any(whole)
}

/// Compiles `source`; a `condition` must end with a boolean. Its errors, each with its line
/// and column inside the program, when it does not compile.
fn compile(source: &str, condition: bool) -> Result<Program, String> {
    let external = ExternalEnv::new_with_kind(event::kind(), Kind::any_object());
    let compiled = vrl::compiler::compile_with_external(
        source,
        &functions(),
        &external,
        CompileConfig::default(),
    )
    .map_err(|diagnostics| located(source, diagnostics))?;
    let program = compiled.program;
    if condition {
        let result = program.final_type_info().result;
        if !result.kind().is_boolean() {
            return Err(format!(
                "must end with true or false, and can end with {}",
                result.kind()
            ));
        }
    }
    Ok(program)
}

/// Each error of `diagnostics` as "line L, column C: message (label)".
fn located(source: &str, diagnostics: vrl::diagnostic::DiagnosticList) -> String {
    let errors = diagnostics.errors();
    let lines: Vec<String> = errors
        .iter()
        .map(|d| {
            let label = d.labels.iter().find(|l| l.primary);
            let at = label.map_or(String::new(), |l| {
                let (line, column) = line_column(source, l.span.start());
                format!("line {line}, column {column}: ")
            });
            let text = label
                .and_then(|l| source.get(l.span.start()..l.span.end()))
                .filter(|t| !t.is_empty())
                .map_or(String::new(), |t| format!(" at `{}`", shortened(t)));
            let detail = label
                .map(|l| l.message.as_str())
                .filter(|m| !m.is_empty() && *m != d.message)
                .map_or(String::new(), |m| format!(" ({m})"));
            format!("{at}{}{detail}{text}", d.message)
        })
        .collect();
    match lines.is_empty() {
        true => "does not compile".into(),
        false => lines.join("; "),
    }
}

/// The first line of `text`, at most 40 characters of it.
fn shortened(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(40) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None if line.len() < text.len() => format!("{line}..."),
        None => line.to_owned(),
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

#[cfg(test)]
mod tests;
