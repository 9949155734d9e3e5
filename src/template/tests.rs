use super::*;
use crate::message::tests::sample;

#[test]
fn renders_every_placeholder() {
    let t = Template::parse("x-{topic.2}-{user.plate}-{client_id}-{{lit}}").unwrap();
    let msg = sample("city/berlin/vehicles/7");
    assert_eq!(t.render(&msg), "x-berlin-B-AB-123-car-7-{lit}");
    assert_eq!(
        Template::parse("{topic}").unwrap().render(&msg),
        "city/berlin/vehicles/7"
    );
    assert_eq!(Template::parse("{topic.9}").unwrap().render(&msg), "");
    let id = Template::parse("{message_id}").unwrap().render(&msg);
    assert_eq!(id, msg.id.to_string());
}

#[test]
fn each_vocabulary_names_what_its_messages_carry() {
    let e = Template::parse("{key}").unwrap_err();
    assert!(
        e.to_string().contains("expected topic, topic.N, user.NAME"),
        "{e}"
    );
    let e = Template::parse_for("{user.x}", Vocabulary::Record).unwrap_err();
    assert!(e.to_string().contains("expected key, tag, topic"), "{e}");
    let t = Template::parse_for("{header.a}-{property.a}-{topic.2}", Vocabulary::Record);
    assert_eq!(t.unwrap().render(&sample("city/berlin")), "--berlin");
}

#[test]
fn a_missing_value_renders_empty_or_refuses_as_the_caller_chose() {
    let t = Template::parse("a/{user.none}/{topic.9}").unwrap();
    let msg = sample("city/berlin");
    assert_eq!(t.render(&msg), "a//");
    let e = t.render_strict(&msg).unwrap_err();
    assert_eq!(
        e.to_string(),
        "`{property.none}` has no value for the message"
    );
    let t = Template::parse("{topic.1}-{user.plate}").unwrap();
    assert_eq!(t.render_strict(&msg).unwrap(), t.render(&msg));
}

#[test]
fn literal_templates_are_known_as_such() {
    assert_eq!(
        Template::parse("events").unwrap().as_literal(),
        Some("events")
    );
    assert_eq!(Template::parse("e-{topic}").unwrap().as_literal(), None);
}

#[test]
fn rejects_malformed_templates() {
    assert_eq!(Template::parse("a-{topic"), Err(TemplateError::Unclosed(2)));
    assert_eq!(Template::parse("a}"), Err(TemplateError::StrayClose(1)));
    assert_eq!(
        Template::parse("{plate}"),
        Err(TemplateError::Unknown("plate".into(), Vocabulary::Mqtt))
    );
    assert_eq!(
        Template::parse("{topic.0}"),
        Err(TemplateError::BadLevel("0".into()))
    );
    assert_eq!(
        Template::parse("{user.}"),
        Err(TemplateError::Unknown("user.".into(), Vocabulary::Mqtt))
    );
}

mod any_input {
    use proptest::prelude::*;

    use crate::message::tests::any_message;
    use crate::template::*;

    /// Text made mostly of what templates are made of, so that placeholders come up often.
    fn template_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("{".to_owned()),
            Just("}".to_owned()),
            Just("{{".to_owned()),
            Just("topic".to_owned()),
            Just("topic.".to_owned()),
            Just("user.".to_owned()),
            Just("message_id".to_owned()),
            Just("client_id".to_owned()),
            "[0-9]{1,3}",
            any::<String>(),
        ];
        proptest::collection::vec(piece, 0..8).prop_map(|p| p.concat())
    }

    proptest! {
        /// Any text parses or is refused with a reason; what parses renders for any message,
        /// and a literal template renders as itself.
        #[test]
        fn any_text_parses_or_is_refused_and_renders_for_any_message(
            text in template_text(),
            msg in any_message(),
        ) {
            if let Ok(template) = Template::parse(&text) {
                let rendered = template.render(&msg);
                if let Some(literal) = template.as_literal() {
                    prop_assert_eq!(rendered, literal);
                }
            }
        }
    }
}
