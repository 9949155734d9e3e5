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
