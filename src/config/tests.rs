//! Loading and validation, on inline TOML.

use std::path::Path;

use super::*;
use crate::connectors::file::FileConnectionConfig;
use crate::connectors::kafka::{Compression, KafkaConnectionConfig};
use crate::connectors::mqtt::MqttSourceConfig;
use crate::settings::{expand, Problem};

const BASE: &str = r#"
[mqtt]
url = "mqtt://127.0.0.1:1883"
username = "bridge"
password = "${PASS}"

[connections.events]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"
compression = "zstd"

[connections.debug]
type = "file"
path = "out.jsonl"

[[routes]]
name = "traffic"
filters = ["city/+/vehicles/#"]
connection = "events"
topic = "traffic-{topic.2}"

[[routes]]
name = "wills"
filters = ["piles/+/will"]
connection = "debug"
"#;

fn env(name: &str) -> Option<String> {
    (name == "PASS").then(|| "s3cret".to_owned())
}

fn parse(text: &str) -> Result<Config, Vec<Problem>> {
    parse_str(text, Path::new("/etc/mqbridge"), &env)
}

fn problems(text: &str) -> Vec<Problem> {
    parse(text).expect_err("config should be refused")
}

#[test]
fn defaults_and_expansion() {
    let c = parse(BASE).unwrap();
    let mqtt = c.mqtt.as_ref().unwrap();
    assert_eq!(mqtt.password.as_ref().unwrap().expose(), "s3cret");
    assert_eq!(mqtt.client_id_prefix, "mqbridge");
    assert_eq!(mqtt.receive_maximum, 1024);
    assert_eq!(mqtt.session_expiry.as_secs(), 3600);
    let source = c.routes[0].source.settings::<MqttSourceConfig>().unwrap();
    assert_eq!(c.routes[0].source.connection(), DEFAULT_BROKER);
    assert_eq!(source.share_group(), "traffic");
    assert_eq!(source.consumers, 1);
    assert_eq!(source.qos, 1);
    assert_eq!(
        c.dead_letter.path.as_deref(),
        Some(Path::new("/etc/mqbridge/dead-letter.jsonl"))
    );
    let f = c.connections["debug"].settings::<FileConnectionConfig>();
    assert_eq!(f.unwrap().path, Path::new("/etc/mqbridge/out.jsonl"));
    let k = c.connections["events"]
        .settings::<KafkaConnectionConfig>()
        .unwrap();
    assert_eq!(k.compression, Compression::Zstd);
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let c = parse(&BASE.replace(
        "[connections.debug]",
        "[connections.events.librdkafka]\n\"sasl.password\" = \"kafka-pw\"\n\n[connections.debug]",
    ))
    .unwrap();
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("kafka-pw"),
        "{shown}"
    );
    assert!(shown.contains("***"));
}

#[test]
fn unknown_keys_are_reported_with_other_problems() {
    let text = BASE
        .replace("username = \"bridge\"", "usernme = \"bridge\"")
        .replace("name = \"wills\"", "name = \"wills\"\nconsumers = 0");
    let p = problems(&text);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert_eq!(
        p[0],
        Problem {
            line: Some(4),
            section: "[mqtt]".into(),
            field: Some("usernme".into()),
            message: "unknown key".into()
        }
    );
    assert_eq!(p[1].section, "route \"wills\"");
    assert_eq!(p[1].field.as_deref(), Some("consumers"));
    assert_eq!(p[1].line, Some(24));
}

#[test]
fn missing_environment_variable() {
    let p = problems(&BASE.replace("${PASS}", "${NOPE}"));
    assert_eq!(p[0].message, "environment variable NOPE is not set");
    assert_eq!(p[0].line, Some(5));
    assert_eq!(expand("a$${b}c", &env).unwrap(), "a${b}c");
    assert!(expand("${}", &env).is_err());
}

#[test]
fn type_errors_name_the_field() {
    let p = problems(&BASE.replace("compression = \"zstd\"", "compression = \"brotli\""));
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(p[0].section, "connection \"events\"");
    assert_eq!(p[0].field.as_deref(), Some("compression"));
    assert!(
        p[0].message.contains("unknown variant `brotli`"),
        "{}",
        p[0].message
    );
}

#[test]
fn file_routes_take_no_topic_and_kafka_routes_need_one() {
    let p = problems(
        &BASE
            .replace(
                "connection = \"debug\"",
                "connection = \"debug\"\ntopic = \"x\"",
            )
            .replace("topic = \"traffic-{topic.2}\"", ""),
    );
    let fields: Vec<_> = p
        .iter()
        .map(|p| (p.section.as_str(), p.field.as_deref()))
        .collect();
    assert!(
        fields.contains(&("route \"traffic\"", Some("topic"))),
        "{p:#?}"
    );
    assert!(
        fields.contains(&("route \"wills\"", Some("topic"))),
        "{p:#?}"
    );
}

#[test]
fn literal_kafka_topics_are_checked() {
    let p = problems(&BASE.replace("traffic-{topic.2}", "bad topic"));
    assert!(p[0].message.contains("holds ' '"), "{}", p[0].message);
}

#[test]
fn duplicate_route_names_and_missing_mqtt() {
    let p = problems(&BASE.replace("name = \"wills\"", "name = \"traffic\""));
    assert!(
        p.iter().any(|p| p.message == "used by another route too"),
        "{p:#?}"
    );
    let p = problems("[connections.x]\ntype = \"file\"\npath = \"-\"\n");
    assert_eq!(p[0].section, "[mqtt]");
}

#[test]
fn unknown_connection_type() {
    let p = problems(&BASE.replace("type = \"file\"", "type = \"s3\""));
    assert!(
        p[0].message.starts_with("unknown connection type \"s3\""),
        "{p:#?}"
    );
    // The route naming the broken connection is not reported again as unknown.
    assert_eq!(p.len(), 1, "{p:#?}");
}

#[test]
fn the_example_config_is_valid() {
    let c = parse_str(EXAMPLE, Path::new("/etc/mqbridge"), &|_| Some("x".into())).unwrap();
    assert_eq!(c.spelled(Spelling::Route).count(), 3);
}

#[test]
fn librdkafka_errors_do_not_show_values() {
    let text = BASE.replace(
        "[connections.debug]",
        "[connections.events.librdkafka]\n\"sasl.pasword\" = \"kafka-pw\"\n\n[connections.debug]",
    );
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(p[0].message.contains("sasl.pasword"), "{}", p[0].message);
    assert!(!p[0].message.contains("kafka-pw"), "{}", p[0].message);
}

#[test]
fn a_route_may_name_its_connection_through_the_environment() {
    let text = BASE.replace("connection = \"events\"", "connection = \"${CONN}\"");
    let env = |name: &str| match name {
        "CONN" => Some("events".to_owned()),
        _ => env(name),
    };
    let c = parse_str(&text, Path::new("/etc/mqbridge"), &env).expect("valid");
    assert_eq!(c.routes[0].connection, "events");
    assert_eq!(c.routes[0].sink.kind(), "kafka");
}

#[test]
fn two_writers_on_one_file_are_refused() {
    let text = BASE.replace("path = \"out.jsonl\"", "path = \"dead.jsonl\"")
        + "\n[dead_letter]\npath = \"/etc/mqbridge/dead.jsonl\"\n";
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(p[0].section, "[dead_letter]");
    assert_eq!(p[0].field.as_deref(), Some("path"));
    assert!(
        p[0].message.contains("connection \"debug\""),
        "{}",
        p[0].message
    );
}

#[test]
fn a_secret_of_the_wrong_type_is_refused_without_showing_it() {
    let text = BASE.replace("password = \"${PASS}\"", "password = 918273645");
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(p[0].field.as_deref(), Some("password"));
    assert!(!p[0].message.contains("918273645"), "{}", p[0].message);
}

mod any_text {
    use proptest::prelude::*;

    use super::*;

    /// One change to a line of a valid file: gone, its value replaced, repeated, or a new line.
    #[derive(Debug, Clone)]
    enum Edit {
        Remove,
        Value(String),
        Repeat,
        Insert(String),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let value = prop_oneof![
            any::<String>().prop_map(|s| format!("{s:?}")),
            any::<i64>().prop_map(|n| n.to_string()),
            Just("[]".to_owned()),
            Just("{}".to_owned()),
            Just("\"${UNSET}\"".to_owned()),
            Just("-1".to_owned()),
            Just("true".to_owned()),
            Just("\"0s\"".to_owned()),
        ];
        prop_oneof![
            Just(Edit::Remove),
            value.prop_map(Edit::Value),
            Just(Edit::Repeat),
            any::<String>().prop_map(Edit::Insert),
        ]
    }

    fn edited(text: &str, edits: &[(usize, Edit)]) -> String {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        for (at, edit) in edits {
            let i = at % lines.len().max(1);
            match edit {
                Edit::Remove if !lines.is_empty() => {
                    lines.remove(i);
                }
                Edit::Value(v) => {
                    if let Some((key, _)) = lines.get(i).and_then(|l| l.split_once(" = ")) {
                        lines[i] = format!("{key} = {v}");
                    }
                }
                Edit::Repeat if !lines.is_empty() => lines.insert(i, lines[i].clone()),
                Edit::Insert(line) => lines.insert(i, line.clone()),
                _ => {}
            }
        }
        lines.join("\n")
    }

    fn no_panic(text: &str) -> Result<(), TestCaseError> {
        if let Err(problems) = parse(text) {
            prop_assert!(!problems.is_empty());
            for p in problems {
                prop_assert!(!p.to_string().trim().is_empty());
            }
        }
        Ok(())
    }

    proptest! {
        /// Any text is a config or a list of problems, never a panic.
        #[test]
        fn any_text_is_a_config_or_problems(text in any::<String>()) {
            no_panic(&text)?;
        }

        /// The example config and a small one, with lines removed, repeated, inserted or given
        /// other values: still a config or problems.
        #[test]
        fn edited_configs_are_a_config_or_problems(
            edits in proptest::collection::vec((any::<usize>(), edit()), 1..6),
            example in any::<bool>(),
        ) {
            let base = if example { EXAMPLE } else { BASE };
            no_panic(&edited(base, &edits))?;
        }
    }
}

mod downlinks;
mod rules;
mod sources;

#[test]
fn a_memory_budget_too_small_for_the_routes_readers_is_refused() {
    // Two MQTT routes to two destinations: two pools, each a consumer and a parking
    // connection, so four readers of 64 KiB.
    let p = problems(&format!("memory_budget = \"200KiB\"\n{BASE}"));
    let budget = p
        .iter()
        .find(|p| p.field.as_deref() == Some("memory_budget"));
    let budget = budget.unwrap_or_else(|| panic!("{p:#?}"));
    assert_eq!(budget.section, "top level");
    assert!(budget.message.contains("4 readers"), "{}", budget.message);
    assert!(
        budget.message.contains("at least 256.0KiB"),
        "{}",
        budget.message
    );
    // A disk buffer's reader is one more.
    let buffered = BASE.replace(
        "connection = \"debug\"\n",
        "connection = \"debug\"\nbuffer = { type = \"disk\", max_size = \"64MiB\" }\n",
    );
    let p = problems(&format!(
        "data_dir = \"/var/lib/mqbridge\"\nmemory_budget = \"300KiB\"\n{buffered}"
    ));
    let budget = p
        .iter()
        .find(|p| p.field.as_deref() == Some("memory_budget"));
    let budget = budget.unwrap_or_else(|| panic!("{p:#?}"));
    assert!(budget.message.contains("5 readers"), "{}", budget.message);
    let c = parse(&format!("memory_budget = \"256KiB\"\n{BASE}")).unwrap();
    assert_eq!(c.memory_budget, 256 * 1024);
    assert_eq!(
        parse(BASE).unwrap().memory_budget,
        crate::flow::DEFAULT_BUDGET
    );
}
