//! Records the sink cannot store go to the dead-letter topic, byte for byte, with why and
//! where they came from in headers — never silently dropped, never blocking their batch.

use super::batch::{Batch, Reject, Source};
use crate::config::KafkaConfig;
use crate::kafka::client_config;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;

pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("dead-letter topic {topic}: {source}")]
pub struct DeadLetterError {
    topic: String,
    source: KafkaError,
}

impl DeadLetters {
    fn error(&self, source: KafkaError) -> DeadLetterError {
        DeadLetterError {
            topic: self.topic.clone(),
            source,
        }
    }

    pub fn new(cfg: &KafkaConfig) -> Result<Self, KafkaError> {
        let producer = client_config(cfg)
            .set("client.id", "bluetick-sink-dead-letters")
            .set("acks", "all")
            .set("message.max.bytes", cfg.message_max_bytes.to_string())
            .set("message.timeout.ms", "25000")
            .create()?;
        Ok(DeadLetters {
            producer,
            topic: cfg.dead_letter_topic.clone(),
            timeout: Duration::from_secs(30),
        })
    }

    /// Sends every rejected record and waits for the broker's acks; only then may the batch's
    /// offsets be committed.
    pub async fn send(
        &self,
        batch: &Batch,
        rejects: &[Reject],
        topic_of: impl Fn(Source) -> String,
    ) -> Result<(), DeadLetterError> {
        let mut pending = Vec::with_capacity(rejects.len());
        for reject in rejects {
            let Some((record, payload)) = batch.record(reject.record) else {
                continue;
            };
            let source = format!(
                "{}/{}/{}",
                topic_of(record.source),
                record.partition,
                record.offset
            );
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "bluetick-error",
                    value: Some(reject.reason.as_bytes()),
                })
                .insert(Header {
                    key: "bluetick-source",
                    value: Some(source.as_bytes()),
                });
            let record = FutureRecord::<[u8], [u8]>::to(&self.topic)
                .payload(payload)
                .headers(headers);
            let delivery = self
                .producer
                .send_result(record)
                .map_err(|(e, _)| self.error(e))?;
            pending.push(delivery);
        }
        for delivery in pending {
            match tokio::time::timeout(self.timeout, delivery).await {
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err((e, _)))) => return Err(self.error(e)),
                Ok(Err(_canceled)) => return Err(self.error(KafkaError::Canceled)),
                Err(_elapsed) => {
                    return Err(self.error(KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::MessageTimedOut,
                    )))
                }
            }
        }
        Ok(())
    }
}
