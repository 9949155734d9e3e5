//! Which Kafka failures are worth retrying. A record Kafka will never take (too large, or
//! addressed to a topic name Kafka rejects) is permanent and goes to the dead-letter path.
//! Refused credentials or authorization are the bridge's configuration: said loudly and retried
//! slowly, the message held until an operator mends them. Everything else (timeouts, broker
//! down, leader changes, a missing topic that an operator may create) is retried, holding the
//! message back meanwhile.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::flow::{Retry, SinkError};

#[derive(Debug, thiserror::Error)]
pub enum KafkaSinkError {
    #[error("invalid Kafka topic: {0}")]
    InvalidTopic(String),
    #[error("Kafka refused the record: {0}")]
    Rejected(KafkaError),
    #[error("Kafka delivery failed: {0}")]
    Delivery(KafkaError),
    #[error("the producer dropped the delivery report")]
    Canceled,
}

impl KafkaSinkError {
    pub fn from_kafka(e: KafkaError) -> Self {
        match e.rdkafka_error_code() {
            Some(code) if is_permanent(code) => KafkaSinkError::Rejected(e),
            _ => KafkaSinkError::Delivery(e),
        }
    }

    pub fn is_retriable(&self) -> bool {
        self.retry() != Retry::Permanent
    }

    pub fn retry(&self) -> Retry {
        match self {
            KafkaSinkError::InvalidTopic(_) | KafkaSinkError::Rejected(_) => Retry::Permanent,
            KafkaSinkError::Delivery(e) if e.rdkafka_error_code().is_some_and(is_refusal) => {
                Retry::Configuration
            }
            KafkaSinkError::Delivery(_) | KafkaSinkError::Canceled => Retry::Retriable,
        }
    }

    /// Errors that leave the producer's idempotence state out of step with the broker: retrying
    /// on the same producer fails again, a new producer (with a new producer id) does not.
    pub fn needs_new_producer(&self) -> bool {
        use RDKafkaErrorCode::*;
        let code = match self {
            KafkaSinkError::Delivery(e) | KafkaSinkError::Rejected(e) => e.rdkafka_error_code(),
            _ => None,
        };
        matches!(
            code,
            Some(
                ProducerFenced
                    | InvalidProducerEpoch
                    | OutOfOrderSequenceNumber
                    | UnknownProducerId
                    | Fatal
            )
        )
    }

    pub fn kind(&self) -> &'static str {
        match self {
            KafkaSinkError::InvalidTopic(_) => "invalid_topic",
            KafkaSinkError::Rejected(e) => match e.rdkafka_error_code() {
                Some(RDKafkaErrorCode::MessageSizeTooLarge) => "too_large",
                _ => "rejected",
            },
            KafkaSinkError::Delivery(e) => match e.rdkafka_error_code() {
                Some(RDKafkaErrorCode::MessageTimedOut) => "timeout",
                Some(code) if is_refusal(code) => "unauthorized",
                _ => "delivery",
            },
            KafkaSinkError::Canceled => "canceled",
        }
    }
}

impl From<KafkaSinkError> for SinkError {
    fn from(e: KafkaSinkError) -> Self {
        SinkError::new(e.kind(), e.retry(), e)
    }
}

/// The broker refuses the bridge's credentials or permissions.
fn is_refusal(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        TopicAuthorizationFailed
            | ClusterAuthorizationFailed
            | SaslAuthenticationFailed
            | Authentication
    )
}

fn is_permanent(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        MessageSizeTooLarge | InvalidMessageSize | InvalidTopic | InvalidRecord | InvalidArgument
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_errors() {
        let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert!(!KafkaSinkError::from_kafka(too_large).is_retriable());
        let timeout = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        let e = KafkaSinkError::from_kafka(timeout);
        assert!(e.is_retriable());
        assert_eq!(e.kind(), "timeout");
        let missing = KafkaError::MessageProduction(RDKafkaErrorCode::UnknownTopicOrPartition);
        assert!(KafkaSinkError::from_kafka(missing).is_retriable());
        assert!(!KafkaSinkError::InvalidTopic("a b".into()).is_retriable());
        let denied = KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed);
        let e = KafkaSinkError::from_kafka(denied);
        assert_eq!(e.retry(), Retry::Configuration);
        assert_eq!(e.kind(), "unauthorized");
    }
}
