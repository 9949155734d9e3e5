//! Secrets in the configuration: a string that never shows in logs, errors or `Debug` output,
//! given inline (often as `${ENV_VAR}`) or read from a file.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

/// A string that never shows in logs, errors or `Debug` output; a value of another type is
/// refused without repeating it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
                Err(not_text())
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
                Err(not_text())
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(not_text())
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(not_text())
            }
        }
        fn not_text<E: serde::de::Error>() -> E {
            E::custom("expected a string in quotes (the value is not shown: it may be a secret)")
        }
        d.deserialize_string(Text)
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A secret given inline (`key`) or in a file (`key_file`, its trailing newline
    /// ignored), read now.
    pub fn inline_or_file(
        inline: &Option<Secret>,
        file: &Option<PathBuf>,
    ) -> Result<Option<Secret>, String> {
        match (inline, file) {
            (Some(s), _) => Ok(Some(s.clone())),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                Ok(Some(Secret::new(text.trim_end_matches(['\r', '\n']))))
            }
            (None, None) => Ok(None),
        }
    }

    /// Checks a `key` / `key_file` pair: not both, and the file there.
    pub fn check_inline_or_file(
        check: &mut super::Check<'_>,
        key: &str,
        inline: &Option<Secret>,
        file: &Option<PathBuf>,
    ) {
        if inline.is_some() && file.is_some() {
            check.field(
                &format!("{key}_file"),
                format!("set together with `{key}`: keep one"),
            );
        }
        if let Some(path) = file.as_ref().filter(|p| !p.is_file()) {
            check.field(
                &format!("{key}_file"),
                format!("{} is not a file", path.display()),
            );
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}
