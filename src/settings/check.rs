//! Collecting validation problems: a `Checker` holds the list for the whole file, a `Check`
//! writes into it for one section (`[mqtt]`, `connection "events"`, `route "traffic"`), locating
//! each problem at the line of its field. Connection and route kinds validate through a `Check`.

use super::problem::Problem;
use super::source::SourceMap;
use crate::rules::RuleSpec;

pub struct Checker<'s, 'a> {
    src: &'s SourceMap<'a>,
    problems: Vec<Problem>,
}

impl<'s, 'a> Checker<'s, 'a> {
    pub fn new(src: &'s SourceMap<'a>) -> Self {
        Checker {
            src,
            problems: Vec::new(),
        }
    }

    /// Problems of the section `label`.
    pub fn section<'c>(&'c mut self, label: &'c str) -> Check<'c> {
        Check {
            section: label,
            prefix: "",
            src: self.src,
            problems: &mut self.problems,
        }
    }

    pub fn into_problems(self) -> Vec<Problem> {
        self.problems
    }
}

/// The problems of one section.
pub struct Check<'c> {
    section: &'c str,
    /// Prepended to each field (`source.`), for a table inside the section.
    prefix: &'c str,
    src: &'c SourceMap<'c>,
    problems: &'c mut Vec<Problem>,
}

impl Check<'_> {
    /// Records a problem with `field` (a dotted path in the section), or with the section.
    pub fn problem(&mut self, field: Option<&str>, msg: impl Into<String>) {
        let line = self.src.line(self.section, field);
        self.problems
            .push(Problem::new(self.section, field, msg).at(line));
    }

    /// Records a problem with `field`.
    pub fn field(&mut self, field: &str, msg: impl Into<String>) {
        match self.prefix {
            "" => self.problem(Some(field), msg),
            prefix => self.problem(Some(&format!("{prefix}.{field}")), msg),
        }
    }

    /// A flow's rules: each problem of its programs and schema under its key.
    pub fn rules(&mut self, rules: &RuleSpec) {
        if let Err(problems) = rules.compile() {
            for (key, problem) in problems {
                self.field(key, problem);
            }
        }
    }

    /// A flow's delivery settings, the same for routes and downlinks.
    pub fn delivery(&mut self, batch_size: usize, concurrency: usize, max_attempts: u32) {
        if !(1..=10_000).contains(&batch_size) {
            self.field("batch_size", "must be between 1 and 10000");
        }
        if !(1..=64).contains(&concurrency) {
            self.field("concurrency", "must be between 1 and 64");
        }
        if !(1..=1000).contains(&max_attempts) {
            self.field("max_attempts", "must be between 1 and 1000");
        }
    }

    /// The same section's problems, with fields inside the table `prefix`.
    pub fn inside<'p>(&'p mut self, prefix: &'p str) -> Check<'p> {
        Check {
            section: self.section,
            prefix,
            src: self.src,
            problems: self.problems,
        }
    }
}
