//! An MQTT v5 PUBLISH as the bridge's neutral `Message`.

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::Publish;
use rumqttc::v5::mqttbytes::QoS;
use uuid::Uuid;

use super::config::PublisherProperties;
use crate::message::{now_ms, Message, Properties, Publisher};

pub fn message(publish: &Publish, names: &PublisherProperties) -> Message {
    let props = publish.properties.clone().unwrap_or_default();
    let properties = Properties {
        payload_format_indicator: props.payload_format_indicator,
        message_expiry_interval: props.message_expiry_interval,
        content_type: props.content_type,
        response_topic: props.response_topic,
        // Copied for the same reason as the payload (below).
        correlation_data: props.correlation_data.map(|c| Bytes::copy_from_slice(&c)),
        user_properties: props.user_properties,
    };
    let lookup = |name: &Option<String>| {
        let name = name.as_deref()?;
        properties
            .user_properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let publisher = Publisher {
        client_id: lookup(&names.client_id_property),
        username: lookup(&names.username_property),
        host: lookup(&names.host_property),
    };
    Message {
        id: Uuid::now_v7(),
        topic: String::from_utf8_lossy(&publish.topic).into_owned(),
        // A copy, not a slice: a slice would keep the whole read buffer it came in alive
        // (8 KiB or more) for as long as the message is in flight, which at a message per
        // read is most of the bridge's memory.
        payload: Bytes::copy_from_slice(&publish.payload),
        qos: qos_number(publish.qos),
        retain: publish.retain,
        dup: publish.dup,
        packet_id: publish.pkid,
        properties,
        timestamp_ms: now_ms(),
        publisher,
        origin: None,
        destination: None,
    }
}

fn qos_number(qos: QoS) -> u8 {
    match qos {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => 1,
        QoS::ExactlyOnce => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publisher_fields_come_from_configured_user_properties() {
        let mut publish = Publish::new("a/b", QoS::AtLeastOnce, "x", None);
        publish.properties = Some(rumqttc::v5::mqttbytes::v5::PublishProperties {
            user_properties: vec![
                ("cid".into(), "dev-1".into()),
                ("cid".into(), "dev-2".into()),
            ],
            ..Default::default()
        });
        let names = PublisherProperties {
            client_id_property: Some("cid".into()),
            ..Default::default()
        };
        let msg = message(&publish, &names);
        assert_eq!(msg.publisher.client_id.as_deref(), Some("dev-1"));
        assert_eq!(msg.publisher.username, None);
        assert_eq!(msg.properties.user_properties.len(), 2);
        assert_eq!(msg.qos, 1);
        assert_eq!(msg.topic, "a/b");
    }
}
