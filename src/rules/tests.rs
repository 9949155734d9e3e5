use super::*;
use crate::message::tests::sample;

fn rules(filter: Option<&str>, transform: Option<&str>) -> Rules {
    let spec = RuleSpec {
        filter: filter.map(Into::into),
        transform: transform.map(Into::into),
        schema: None,
    };
    spec.compile().unwrap().unwrap()
}

fn with_payload(payload: &str) -> Message {
    let mut msg = sample("cars/7/battery");
    msg.payload = payload.as_bytes().to_vec().into();
    msg
}

#[test]
fn no_rules_compile_to_none() {
    assert!(RuleSpec::default().compile().unwrap().is_none());
}

#[test]
fn where_passes_or_filters_on_a_json_field() {
    let r = rules(Some("int!(.payload.battery) < 20"), None);
    assert!(matches!(
        r.apply(with_payload(r#"{"battery": 12}"#)),
        Applied::One(_)
    ));
    assert!(matches!(
        r.apply(with_payload(r#"{"battery": 80}"#)),
        Applied::Filtered
    ));
}

#[test]
fn where_on_a_missing_field_or_wrong_type_is_refused_not_dropped() {
    let r = rules(Some("int!(.payload.battery) < 20"), None);
    for payload in [r#"{"speed": 3}"#, "not json", r#"{"battery": "low"}"#] {
        match r.apply(with_payload(payload)) {
            Applied::Refused(msg, e) => {
                assert_eq!(e.kind(), "transform_error", "{payload}: {e}");
                assert!(e.to_string().starts_with("where: "), "{e}");
                assert_eq!(msg.payload, payload.as_bytes(), "the message as it came");
            }
            _ => panic!("{payload} was not refused"),
        }
    }
}

#[test]
fn transform_reshapes_the_payload_and_sets_properties_and_destination() {
    let r = rules(
        None,
        Some(
            r#"
            .payload = { "plate": .properties.plate[0], "speed": .payload.speed }
            .properties.source = "bridge"
            .destination.topic = "traffic." + string!(.topic_levels[1])
            .destination.key = .properties.lane
            "#,
        ),
    );
    let Applied::One(out) = r.apply(with_payload(r#"{"speed": 88, "junk": [1, 2]}"#)) else {
        panic!("not one message");
    };
    let payload: serde_json::Value = serde_json::from_slice(&out.payload).unwrap();
    assert_eq!(
        payload,
        serde_json::json!({"plate": "B-AB-123", "speed": 88})
    );
    assert_eq!(out.user_property("source"), Some("bridge"));
    assert_eq!(out.to_topic(), Some("traffic.7"));
    assert_eq!(out.to_key(), Some("2"));
    assert_eq!(out.topic, "cars/7/battery", "the topic stays unless set");
}

#[test]
fn a_payload_no_program_touches_goes_on_byte_for_byte() {
    let payload = r#"{ "b": 1,   "a": [2.50, 1e3] }"#;
    let r = rules(
        Some(r#".topic_levels[0] == "cars""#),
        Some(".destination.key = .topic_levels[1]"),
    );
    let Applied::One(out) = r.apply(with_payload(payload)) else {
        panic!("not one message");
    };
    assert_eq!(
        &out.payload[..],
        payload.as_bytes(),
        "not written again as JSON"
    );
    assert_eq!(out.to_key(), Some("7"));
    // A program that reaches the whole event sees the payload too.
    let whole = rules(None, Some(r#".properties.fields = join!(keys(.), ",")"#));
    let Applied::One(out) = whole.apply(with_payload(payload)) else {
        panic!("not one message");
    };
    assert!(out.user_property("fields").unwrap().contains("payload"));
}

#[test]
fn transform_splits_an_array_and_drops_on_an_empty_one() {
    let r = rules(
        None,
        Some(
            r#"
            readings = array!(.payload.readings)
            event = .
            . = map_values(readings) -> |r| { e = event; e.payload = r; e }
            "#,
        ),
    );
    match r.apply(with_payload(
        r#"{"readings": [{"v": 1}, {"v": 2}, "three"]}"#,
    )) {
        Applied::Many(msgs) => {
            let payloads: Vec<&[u8]> = msgs.iter().map(|m| &m.payload[..]).collect();
            assert_eq!(payloads, [&b"{\"v\":1}"[..], b"{\"v\":2}", b"three"]);
        }
        _ => panic!("not split"),
    }
    assert!(matches!(
        r.apply(with_payload(r#"{"readings": []}"#)),
        Applied::Filtered
    ));
}

#[test]
fn an_abort_or_a_failing_function_dead_letters_the_message() {
    let r = rules(
        None,
        Some(
            r#"if .payload.bad == true { abort }
.payload = parse_json!(.payload.inner)"#,
        ),
    );
    for payload in [r#"{"bad": true}"#, r#"{"inner": "{not json"}"#] {
        let Applied::Refused(_, e) = r.apply(with_payload(payload)) else {
            panic!("{payload} not refused");
        };
        assert_eq!(e.kind(), "transform_error");
    }
    let Applied::One(out) = r.apply(with_payload(r#"{"inner": "{\"a\": 1}"}"#)) else {
        panic!("not one");
    };
    assert_eq!(&out.payload[..], b"{\"a\":1}");
}

#[test]
fn compile_errors_name_the_line_and_column_in_the_program() {
    let spec = RuleSpec {
        filter: Some(".retain ||\n  to_nt(.payload.x) > 1".into()),
        transform: Some(".a = 1\n.b = ".into()),
        schema: Some("/nonexistent/schema.json".into()),
    };
    let problems = spec.compile().err().unwrap();
    let find = |key| &problems.iter().find(|(k, _)| *k == key).unwrap().1;
    assert!(find("where").contains("line 2, column 3"), "{problems:?}");
    assert!(find("where").contains("to_nt"), "{problems:?}");
    assert!(find("transform").contains("line 2"), "{problems:?}");
    assert!(find("schema").contains("cannot read"), "{problems:?}");
}

#[test]
fn a_condition_must_end_with_a_boolean() {
    let spec = RuleSpec {
        filter: Some(".payload.battery".into()),
        ..Default::default()
    };
    let problems = spec.compile().err().unwrap();
    assert_eq!(problems[0].0, "where");
    assert!(problems[0].1.contains("true or false"), "{problems:?}");
}

#[test]
fn functions_that_reach_the_system_are_not_there() {
    for source in [
        r#"get_env_var!("HOME") != """#,
        r#"get_hostname!() != """#,
        r#"http_request!("http://127.0.0.1") != null"#,
    ] {
        let spec = RuleSpec {
            filter: Some(source.into()),
            ..Default::default()
        };
        let problems = spec.compile().err().unwrap();
        assert!(
            problems[0].1.contains("undefined function"),
            "{source}: {problems:?}"
        );
    }
}

#[test]
fn a_payload_against_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("battery.json");
    let schema = r#"{"type": "object", "required": ["battery"],
        "properties": {"battery": {"type": "integer", "minimum": 0, "maximum": 100}}}"#;
    std::fs::write(&path, schema).unwrap();
    let spec = RuleSpec {
        schema: Some(path),
        ..Default::default()
    };
    let r = spec.compile().unwrap().unwrap();
    assert!(matches!(
        r.apply(with_payload(r#"{"battery": 50}"#)),
        Applied::One(_)
    ));
    for (payload, says) in [
        (r#"{"battery": 500}"#, "/battery"),
        ("{}", "battery"),
        ("not json", "not JSON"),
    ] {
        let Applied::Refused(_, e) = r.apply(with_payload(payload)) else {
            panic!("{payload} passed");
        };
        assert_eq!(e.kind(), "schema_invalid");
        assert!(e.to_string().contains(says), "{payload}: {e}");
    }
}

mod any_input {
    use proptest::prelude::*;

    use crate::message::tests::any_message;
    use crate::rules::*;

    /// Payloads that are often JSON objects with the fields the rules below read, of any type.
    fn payload() -> impl Strategy<Value = Vec<u8>> {
        let scalar = prop_oneof![
            Just("null".to_owned()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| serde_json::json!(f).to_string()),
            ".{0,12}".prop_map(|s| serde_json::json!(s).to_string()),
            Just("[1, {\"a\": []}]".to_owned()),
        ];
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            (scalar.clone(), scalar, "[a-z]{1,3}").prop_map(|(a, t, k)| {
                format!(r#"{{"a": {a}, "t": {t}, "{k}": {{"x": 1}}}}"#).into_bytes()
            }),
        ]
    }

    fn all_kinds_of_rules(schema: &std::path::Path) -> Vec<Rules> {
        let specs = [
            (Some("(to_int(.payload.a) ?? 0) > 3"), None),
            (Some("int!(.payload.a) < 0"), None),
            (
                None,
                Some(
                    r#".destination.key = .properties.plate
                    .destination.topic = .payload.t
                    .properties.level = .topic_levels[1]
                    .payload = { "a": .payload.a, "from": .publisher.client_id }
                    . = [., .]"#,
                ),
            ),
            (None, Some(".payload = .payload.a")),
            (None, Some(".properties = .payload")),
            (None, Some(". = .payload")),
            (
                Some(".retain"),
                Some(".payload = parse_json!(string!(.payload.t))"),
            ),
        ];
        let mut out: Vec<Rules> = specs
            .into_iter()
            .map(|(filter, transform)| {
                let spec = RuleSpec {
                    filter: filter.map(Into::into),
                    transform: transform.map(Into::into),
                    schema: None,
                };
                spec.compile().unwrap().unwrap()
            })
            .collect();
        let with_schema = RuleSpec {
            schema: Some(schema.to_owned()),
            transform: Some(".payload.checked = true".into()),
            ..Default::default()
        };
        out.push(with_schema.compile().unwrap().unwrap());
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Any payload bytes and any metadata: each message is delivered, filtered or refused
        /// with a rule's error kind and the message as it came; nothing panics.
        #[test]
        fn any_message_passes_is_filtered_or_is_refused_as_it_came(
            msg in any_message(),
            payload in payload(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let schema = dir.path().join("schema.json");
            std::fs::write(&schema, r#"{"type": "object", "required": ["a"]}"#).unwrap();
            let mut msg = msg;
            msg.payload = payload.into();
            for rules in all_kinds_of_rules(&schema) {
                match rules.apply(msg.clone()) {
                    Applied::Refused(kept, e) => {
                        prop_assert!(kept == msg);
                        prop_assert!(["schema_invalid", "transform_error"].contains(&e.kind()));
                    }
                    Applied::Many(parts) => prop_assert_eq!(parts.len(), 2),
                    Applied::One(_) | Applied::Filtered => {}
                }
            }
        }
    }
}
