//! One thing wrong with a configuration file, and the list of them all.

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem found while loading or validating, located as precisely as the file allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// Where in the file: `[mqtt]`, `connection "events"`, `route "traffic"`, ...
    pub section: String,
    /// The field, as a dotted path inside the section, when the problem is about one.
    pub field: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn new(
        section: impl Into<String>,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Problem {
            line: None,
            section: section.into(),
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }

    pub fn at(mut self, line: Option<usize>) -> Self {
        self.line = self.line.or(line);
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        f.write_str(&self.section)?;
        if let Some(field) = &self.field {
            write!(f, ", field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl ConfigError {
    pub fn new(file: &Path, mut problems: Vec<Problem>) -> Self {
        problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        ConfigError {
            file: file.to_owned(),
            problems,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        let s = if n == 1 { "" } else { "s" };
        write!(f, "{}: {n} problem{s}", self.file.display())?;
        for problem in &self.problems {
            write!(f, "\n  {}: {problem}", self.file.display())?;
        }
        Ok(())
    }
}
