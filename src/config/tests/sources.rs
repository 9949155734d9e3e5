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

#[test]
fn a_file_without_mqtt_is_valid_when_nothing_reads_or_writes_a_broker() {
    let kafka_only = r#"
[connections.events]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"

[[routes]]
name = "copy"
source = { connection = "events", topic = "orders" }
connection = "events"
topic = "orders-copy"
"#;
    let c = parse(kafka_only).unwrap();
    assert!(c.mqtt.is_none());
    assert_eq!(c.routes[0].source.connection(), "events");
    // A route on the default broker needs it.
    let p = problems(&format!(
        "{kafka_only}\n[[routes]]\nname = \"up\"\nfilters = [\"a/#\"]\nconnection = \"events\"\ntopic = \"t\"\n"
    ));
    assert!(
        p.iter()
            .any(|p| p.section == "[mqtt]" && p.message.contains("needs a broker")),
        "{p:#?}"
    );
}

#[test]
fn an_mqtt_sink_and_source_take_their_own_keys() {
    let text = format!(
        r#"{BASE}
[connections.cloud]
type = "mqtt"
url = "mqtt://127.0.0.1:1884"

[[routes]]
name = "to-cloud"
source = {{ filters = ["s/#"], qos = 0 }}
connection = "cloud"
mqtt_topic = "site/{{topic}}"
qos = 1

[[routes]]
name = "ambiguous"
filters = ["s/#"]
qos = 0
connection = "cloud"
"#
    );
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(p[0].section, "route \"ambiguous\"");
    assert_eq!(p[0].field.as_deref(), Some("qos"));
    assert!(p[0].message.contains("both"), "{p:#?}");
    // A route from Kafka to a broker must say where each record goes.
    let text = format!(
        "{BASE}\n[connections.cloud]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1884\"\n\n\
         [[routes]]\nname = \"down\"\nsource = {{ connection = \"events\", topic = \"c\" }}\n\
         connection = \"cloud\"\n"
    );
    let p = problems(&text);
    assert_eq!(p[0].field.as_deref(), Some("mqtt_topic"), "{p:#?}");
    assert!(p[0].message.contains("missing"), "{p:#?}");
}
