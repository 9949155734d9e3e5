//! `[[downlinks]]`: defaults, and problems named by downlink and field.

use super::*;
use crate::connectors::kafka::KafkaSourceConfig;
use crate::connectors::mqtt::MqttSinkConfig;
use crate::connectors::rocketmq::RocketmqSourceConfig;

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
    let d = c.spelled(Spelling::Downlink).next().unwrap();
    // A route from the Kafka topic to the default broker.
    assert_eq!(d.source.connection(), "events");
    assert_eq!(d.connection, DEFAULT_BROKER);
    let source = d.source.settings::<KafkaSourceConfig>().unwrap();
    let sink = d.sink.settings::<MqttSinkConfig>().unwrap();
    assert_eq!(source.group(), "mqbridge-commands");
    assert_eq!(sink.qos, 1);
    assert_eq!(d.batch_size, 256);
    assert_eq!((d.concurrency, d.max_attempts), (4, 5));
    assert_eq!(source.start, crate::sources::StartFrom::Latest);
    assert!(d.enabled && !sink.retain && sink.message_expiry.is_none());
    assert!(d.is_ordered());
    assert_eq!(sink.mqtt_connections, 2);
    // RocketMQ's tag filter defaults to every message.
    let rocketmq = format!(
        "{BASE}{}\n[connections.rq]\ntype = \"rocketmq\"\nnamesrv = [\"127.0.0.1:9876\"]\n",
        DOWNLINK.replace("connection = \"events\"", "connection = \"rq\"")
    );
    let c = parse(&rocketmq).unwrap();
    let d = c.spelled(Spelling::Downlink).next().unwrap();
    let source = d.source.settings::<RocketmqSourceConfig>().unwrap();
    assert_eq!(source.tags, "*");
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
