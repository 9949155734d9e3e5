//! A route's rules in the configuration: compiled at load, problems located under their key,
//! a schema file taken from the config file's folder and its content part of the route.

use super::*;

fn with_rules(dir: &Path, rules: &str) -> Result<Config, Vec<Problem>> {
    let route = format!(
        "\n[[routes]]\nname = \"ruled\"\nfilters = [\"r/#\"]\nconnection = \"debug\"\n{rules}\n"
    );
    parse_str(&format!("{BASE}{route}"), dir, &env)
}

#[test]
fn a_schema_is_read_from_the_config_folder_and_a_changed_file_changes_the_route() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.json"), r#"{"type": "object"}"#).unwrap();
    let rules = "schema = \"s.json\"\nwhere = \".retain == false\"";
    let first = with_rules(dir.path(), rules).unwrap();
    let route = &first.routes[2];
    assert_eq!(
        route.rules.schema.as_deref(),
        Some(dir.path().join("s.json").as_path())
    );
    let again = with_rules(dir.path(), rules).unwrap();
    assert_eq!(
        first.routes[2], again.routes[2],
        "the same file, the same route"
    );
    std::fs::write(dir.path().join("s.json"), r#"{"type": "array"}"#).unwrap();
    let second = with_rules(dir.path(), rules).unwrap();
    assert_ne!(first.routes[2], second.routes[2], "a reload restarts it");
}

#[test]
fn rule_problems_name_the_route_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let problems = with_rules(
        dir.path(),
        "where = \".payload.x +\"\nschema = \"none.json\"",
    )
    .unwrap_err();
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert!(
        text.iter().any(|p| p.contains("route \"ruled\"")
            && p.contains("`where`")
            && p.contains("line 1")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|p| p.contains("`schema`") && p.contains("none.json")),
        "{text:?}"
    );
}
