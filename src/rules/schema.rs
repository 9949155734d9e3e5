//! A flow's `schema`: a JSON Schema (draft 2020-12, crate `jsonschema`) each payload must
//! match. Only the file itself is read: a `$ref` to another document is not fetched.

use std::path::Path;

/// The errors listed for a payload that does not match, at most.
const ERRORS_SHOWN: usize = 3;

pub struct Schema {
    validator: jsonschema::Validator,
}

impl Schema {
    /// Reads and compiles the schema at `path`; why not, when it cannot.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let schema: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
        let validator = jsonschema::draft202012::new(&schema)
            .map_err(|e| format!("{} is not a valid JSON Schema: {e}", path.display()))?;
        Ok(Schema { validator })
    }

    /// Whether `payload` (parsed, when it is JSON) matches; the first errors when not.
    pub fn check(&self, payload: Option<&serde_json::Value>) -> Result<(), String> {
        let Some(payload) = payload else {
            return Err("the payload is not JSON".into());
        };
        let errors: Vec<String> = self
            .validator
            .iter_errors(payload)
            .take(ERRORS_SHOWN)
            .map(|e| match e.instance_path().as_str() {
                "" => e.to_string(),
                at => format!("{at}: {e}"),
            })
            .collect();
        match errors.is_empty() {
            true => Ok(()),
            false => Err(errors.join("; ")),
        }
    }
}
