//! Rules for names: MQTT topic filters and topic names (MQTT v5 section 4.7) and Kafka topic
//! names (Kafka's `Topic.validate`: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`).

/// Checks an MQTT topic filter; `Err` says what is wrong.
pub fn check_mqtt_filter(filter: &str) -> Result<(), String> {
    check_mqtt_common(filter)?;
    if filter.starts_with("$share/") {
        return Err("write the filter without `$share/`: the route's share_group adds it".into());
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i != levels.len() - 1) {
            return Err("`#` must be a whole level and the last one (as in `a/b/#`)".into());
        }
        if level.contains('+') && *level != "+" {
            return Err("`+` must be a whole level (as in `a/+/c`)".into());
        }
    }
    Ok(())
}

/// Checks an MQTT topic name (no wildcards), e.g. the dead-letter topic.
pub fn check_mqtt_topic(topic: &str) -> Result<(), String> {
    check_mqtt_common(topic)?;
    if topic.contains(['+', '#']) {
        return Err("a topic to publish to cannot hold the wildcards `+` or `#`".into());
    }
    Ok(())
}

fn check_mqtt_common(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty".into());
    }
    if s.len() > 65535 {
        return Err("longer than 65535 bytes".into());
    }
    if s.contains('\0') {
        return Err("contains a NUL character".into());
    }
    Ok(())
}

/// Checks a Kafka topic name.
/// RocketMQ's topic rules: letters, digits, `%`, `|`, `_` and `-`, at most 127 characters.
pub fn check_rocketmq_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("empty RocketMQ topic name".into());
    }
    if topic.len() > 127 {
        return Err(format!(
            "RocketMQ topic name is {} characters long (at most 127)",
            topic.len()
        ));
    }
    if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-')))
    {
        return Err(format!(
            "RocketMQ topic name \"{topic}\" holds {c:?} (allowed: letters, digits, `%`, `|`, `_`, `-`)"
        ));
    }
    Ok(())
}

/// RocketMQ's group name rules (producer and consumer groups): letters, digits, `%`, `|`, `_`
/// and `-`, at most 120 characters.
pub fn check_rocketmq_group(group: &str) -> Result<(), String> {
    let ok = !group.is_empty()
        && group.len() <= 120
        && group
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "%|_-".contains(ch));
    match ok {
        true => Ok(()),
        false => Err(format!(
            "\"{group}\": RocketMQ groups take letters, digits, `%`, `|`, `_` and `-`, at most 120"
        )),
    }
}

pub fn check_kafka_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("empty Kafka topic name".into());
    }
    if topic == "." || topic == ".." {
        return Err(format!("\"{topic}\" is not a valid Kafka topic name"));
    }
    if topic.len() > 249 {
        return Err(format!(
            "Kafka topic name is {} characters long (at most 249)",
            topic.len()
        ));
    }
    if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "Kafka topic name \"{topic}\" holds {c:?} (allowed: letters, digits, `.`, `_`, `-`)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_filters() {
        for ok in ["a", "a/b", "a/+/c", "#", "a/#", "+", "+/+", "/a", "a//b"] {
            assert_eq!(check_mqtt_filter(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a/#/b", "a#", "a/b+", "$share/g/a", "a\0b"] {
            assert!(check_mqtt_filter(bad).is_err(), "{bad}");
        }
        assert!(check_mqtt_topic("a/+").is_err());
        assert_eq!(check_mqtt_topic("dead/letters"), Ok(()));
    }

    #[test]
    fn kafka_topics() {
        assert_eq!(check_kafka_topic("traffic-berlin_1.x"), Ok(()));
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(250)] {
            assert!(check_kafka_topic(bad).is_err(), "{bad}");
        }
    }
}
