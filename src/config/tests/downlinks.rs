//! `[[downlinks]]`: defaults, and problems named by downlink and field.

use super::*;

const DOWNLINK: &str = r#"
[[downlinks]]
name = "commands"
connection = "events"
topic = "charger-commands"
mqtt_topic = "chargers/{key}/commands"
"#;

#[test]
fn downlinks_take_defaults() {
    let c = parse(&format!("{BASE}{DOWNLINK}")).unwrap();
    let d = &c.downlinks[0];
    assert_eq!(d.group(), "mqbridge-commands");
    assert_eq!(d.qos, 1);
    assert_eq!(d.tags, "*");
    assert_eq!(d.batch_size, 256);
    assert_eq!((d.concurrency, d.max_attempts), (4, 5));
    assert_eq!(d.start, crate::downlinks::StartFrom::Latest);
    assert!(d.enabled && !d.retain && d.message_expiry.is_none());
}

#[test]
fn downlink_problems_name_the_downlink_and_field() {
    let text = format!(
        "{BASE}{}{}",
        DOWNLINK
            .replace("chargers/{key}/commands", "chargers/{tag}/#")
            .replace(
                "name = \"commands\"",
                "name = \"commands\"\nqos = 2\ntags = \"a || b\"\nconcurrency = 0\nmax_attempts = 0"
            ),
        "\n[[downlinks]]\nname = \"traffic\"\nconnection = \"debug\"\ntopic = \"t\"\n\
         mqtt_topic = \"x/{user.a}\"\nbatch = 5\n"
    );
    let p = problems(&text);
    let found: Vec<(String, Option<String>)> = p
        .iter()
        .map(|p| (p.section.clone(), p.field.clone()))
        .collect();
    let has = |section: &str, field: &str| {
        found
            .iter()
            .any(|(s, f)| s == section && f.as_deref() == Some(field))
    };
    // The second downlink's template does not parse, so it is reported alone with its key.
    assert!(has("downlink \"traffic\"", "mqtt_topic"), "{p:#?}");
    assert!(has("downlink \"traffic\"", "batch"), "{p:#?}");
    assert!(has("downlink \"commands\"", "qos"), "{p:#?}");
    assert!(has("downlink \"commands\"", "tags"), "{p:#?}");
    assert!(has("downlink \"commands\"", "concurrency"), "{p:#?}");
    assert!(has("downlink \"commands\"", "max_attempts"), "{p:#?}");
    assert!(has("downlink \"commands\"", "mqtt_topic"), "{p:#?}");
    let wildcard = p
        .iter()
        .find(|p| p.message.contains("`+`, `#`"))
        .expect("the literal `#` is refused");
    assert_eq!(wildcard.line, Some(35), "{wildcard:?}");
    // A route and a downlink may not share a name; a downlink reads kafka or rocketmq only.
    let text = format!(
        "{BASE}{}",
        DOWNLINK
            .replace("name = \"commands\"", "name = \"wills\"")
            .replace("connection = \"events\"", "connection = \"debug\"")
    );
    let p = problems(&text);
    assert!(
        p.iter()
            .any(|p| p.message.contains("a route has this name")),
        "{p:#?}"
    );
    assert!(
        p.iter().any(|p| p
            .message
            .contains("a downlink reads a kafka or rocketmq connection")),
        "{p:#?}"
    );
    let p = problems(&format!(
        "{BASE}{}",
        DOWNLINK.replace("connection = \"events\"", "connection = \"nowhere\"")
    ));
    assert!(p[0].message.contains("not defined"), "{p:#?}");
}
