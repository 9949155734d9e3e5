//! A route's `source`: read, checked, its problems located.

use super::*;
use crate::connectors::kafka::KafkaSourceConfig;
use crate::connectors::mqtt::MqttSourceConfig;

#[test]
fn a_route_reads_a_kafka_topic_when_it_names_a_source() {
    let route = r#"
[[routes]]
name = "orders"
connection = "debug"
source = { connection = "events", topic = "orders", start = "earliest" }
"#;
    let c = parse(&format!("{BASE}{route}")).unwrap();
    let source = &c.routes[2].source;
    assert_eq!(source.connection(), "events");
    let spec = source
        .settings::<KafkaSourceConfig>()
        .expect("a Kafka source");
    assert_eq!(spec.topic, "orders");
    assert_eq!(spec.group(), "mqbridge-orders");
    assert_eq!(spec.start, crate::sources::StartFrom::Earliest);
    assert!(source.settings::<MqttSourceConfig>().is_none());

    // A file cannot be read, MQTT filters do not go with a source, a Kafka source has no
    // tags, and a typo inside the source table is located.
    let broken = r#"
[[routes]]
name = "orders"
connection = "events"
topic = "copy"
filters = ["a/#"]
source = { connection = "debug", topic = "orders" }

[[routes]]
name = "more"
connection = "debug"
source = { connection = "events", topic = "bad topic", tags = "a", bogus = 1 }
"#;
    let text = format!("{BASE}{broken}");
    let p = problems(&text);
    let at = |section: &str, field: &str| {
        p.iter()
            .find(|p| p.section == section && p.field.as_deref() == Some(field))
            .unwrap_or_else(|| panic!("{section} {field}: {p:#?}"))
            .clone()
    };
    let file = at("route \"orders\"", "source.connection");
    assert!(
        file.message.contains("cannot") || file.message.contains("a route reads"),
        "{file:?}"
    );
    assert!(at("route \"orders\"", "filters").message.contains("source"));
    at("route \"more\"", "source.topic");
    at("route \"more\"", "source.tags");
    let typo = at("route \"more\"", "source.bogus");
    let bogus = text.lines().position(|l| l.contains("bogus")).unwrap() + 1;
    assert_eq!(typo.line, Some(bogus), "{typo:?}");
}
