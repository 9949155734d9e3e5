//! Reading and checking settings, below the configuration model and the connectors that define
//! their own: where things are in the file (`source`), reading one section at a time with every
//! problem located (`reader`), collecting checks by section and field (`check`, `problem`),
//! secrets (`secret`) and paths relative to the config file.

mod check;
mod problem;
mod reader;
mod secret;
mod source;

use std::path::{Path, PathBuf};

pub use check::{Check, Checker};
pub use problem::{ConfigError, Problem};
pub use reader::{expand, struct_fields, SectionReader};
pub use secret::Secret;
pub use source::{line_of, SourceMap, Value};

/// Makes each of `paths` that is relative relative to `base` (the config file's folder): what
/// `Connector::resolve_paths` does for a kind's file settings.
pub fn resolve_relative<'p>(base: &Path, paths: impl IntoIterator<Item = &'p mut Option<PathBuf>>) {
    for path in paths.into_iter().flatten() {
        if path.is_relative() {
            *path = base.join(&*path);
        }
    }
}
