//! The Kafka side every component shares: client settings, topic creation, and the bounded
//! producer with its delivery futures and error classification ([`producer`]), used by
//! ingest for events and by the sink for dead letters alike.
//!
//! Topics are created explicitly (with their partition counts), because production clusters
//! and some Kafka-protocol brokers do not auto-create them.

pub mod producer;
pub mod topics;

pub use producer::{Pending, ProduceError, Producer};

use crate::config::KafkaConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("kafka client: {0}")]
    Client(#[from] KafkaError),
    #[error("topic {topic}: {code}")]
    Topic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("topic {topic} {problem}")]
    Layout { topic: String, problem: String },
    #[error("setting configs of topic {topic}: {why}")]
    Alter { topic: String, why: String },
}

/// Settings every bluetick client shares.
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("socket.keepalive.enable", "true")
        .set("log_level", "4");
    if !cfg.debug.is_empty() {
        c.set("debug", &cfg.debug).set("log_level", "7");
    }
    c
}
