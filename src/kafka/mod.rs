//! The Kafka side every component shares: client settings, topic creation, and the bounded
//! producer with its delivery futures and error classification ([`producer`]), used by
//! ingest for events and by the sink for dead letters alike.
//!
//! Topics are created explicitly (with their partition counts), because production clusters
//! and some Kafka-protocol brokers do not auto-create them.

pub mod producer;

pub use producer::{Pending, ProduceError, Producer};

use crate::config::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("kafka client: {0}")]
    Client(#[from] KafkaError),
    #[error("creating topic {topic}: {code}")]
    Topic {
        topic: String,
        code: RDKafkaErrorCode,
    },
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

/// Creates bluetick's topics if they do not exist yet; existing topics are left as they are.
pub async fn ensure_topics(cfg: &KafkaConfig, timeout: Duration) -> Result<(), SetupError> {
    let admin: AdminClient<DefaultClientContext> = client_config(cfg).create()?;
    let big = cfg.message_max_bytes.to_string();
    let replication = || TopicReplication::Fixed(cfg.replication_factor);
    let topics = [
        NewTopic::new(&cfg.events_topic, cfg.partitions, replication()),
        NewTopic::new(&cfg.security_topic, cfg.partitions.min(3), replication()),
        NewTopic::new(&cfg.dead_letter_topic, 1, replication()).set("max.message.bytes", &big),
    ];
    let opts = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    for result in admin.create_topics(&topics, &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(SetupError::Topic { topic, code }),
        }
    }
    Ok(())
}
