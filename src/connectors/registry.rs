//! The connection kinds the bridge knows: one line each. Adding a kind is a folder under
//! `connectors/` that implements `Connector`, and a line here.

use super::kind::{Kind, Registered};
use super::{exec, file, http, kafka, mqtt, rocketmq, scf};

pub static KINDS: &[&dyn Kind] = &[
    &Registered::<kafka::Kafka>::new(),
    &Registered::<file::File>::new(),
    &Registered::<http::Http>::new(),
    &Registered::<exec::Exec>::new(),
    &Registered::<scf::Scf>::new(),
    &Registered::<rocketmq::Rocketmq>::new(),
    &Registered::<mqtt::Mqtt>::new(),
];

/// The kind called `name`.
pub fn kind(name: &str) -> Option<&'static dyn Kind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_knows_the_keys_it_takes_as_a_sink() {
        let keys = |name| kind(name).map(|k| k.sink_keys());
        assert_eq!(keys("kafka"), Some(&["topic", "key"][..]));
        assert_eq!(keys("rocketmq"), Some(&["topic", "tag", "keys"][..]));
        assert_eq!(keys("file"), Some(&[][..]));
        assert_eq!(keys("http"), Some(&["base64_payload"][..]));
        assert_eq!(keys("exec"), Some(&["base64_payload"][..]));
        let scf = [
            "function",
            "namespace",
            "qualifier",
            "invocation",
            "base64_payload",
        ];
        assert_eq!(keys("scf"), Some(&scf[..]));
        let mqtt = [
            "mqtt_topic",
            "qos",
            "retain",
            "message_expiry",
            "mqtt_connections",
        ];
        assert_eq!(keys("mqtt"), Some(&mqtt[..]));
        assert!(kind("s3").is_none());
    }

    #[test]
    fn each_readable_kind_knows_the_keys_of_its_source() {
        let keys = |name| kind(name).map(|k| k.source_keys());
        assert_eq!(keys("kafka"), Some(&["topic", "group", "start"][..]));
        let rocketmq = ["topic", "tags", "group", "start"];
        assert_eq!(keys("rocketmq"), Some(&rocketmq[..]));
        let mqtt = ["filters", "share_group", "consumers", "qos"];
        assert_eq!(keys("mqtt"), Some(&mqtt[..]));
        assert_eq!(keys("http"), Some(&[][..]), "a sink only");
    }

    #[test]
    fn each_kind_says_what_it_offers() {
        let offers: Vec<(&str, &str)> = KINDS.iter().map(|k| (k.name(), k.offers())).collect();
        assert_eq!(
            offers,
            [
                ("kafka", "sink and source"),
                ("file", "sink"),
                ("http", "sink"),
                ("exec", "sink"),
                ("scf", "sink"),
                ("rocketmq", "sink and source"),
                ("mqtt", "sink and source"),
            ]
        );
    }
}
