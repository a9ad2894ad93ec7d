//! Events the sink cannot store go to the dead-letter topic, byte for byte (their line of the
//! record, not its neighbours), with why and where they came from in headers — never silently
//! dropped, never blocking their batch.
//! Written with the shared bounded producer (`crate::kafka`), and acked before the batch commits.

use super::batch::{Batch, Reject, Source};
use crate::config::KafkaConfig;
use crate::kafka::{ProduceError, Producer};
use crate::model::record;
use crate::model::skeleton::{HEADER_ERROR, HEADER_KIND, HEADER_SOURCE};
use rdkafka::error::KafkaError;
use std::time::Duration;
use tokio::time::Instant;

/// How long one attempt waits for the broker's acks before the batch is retried.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

pub struct DeadLetters {
    producer: Producer,
    topic: String,
}

#[derive(Debug, thiserror::Error)]
#[error("dead-letter topic {topic}: {source}")]
pub struct DeadLetterError {
    topic: String,
    source: ProduceError,
}

impl DeadLetters {
    pub fn new(cfg: &KafkaConfig) -> Result<Self, KafkaError> {
        Ok(DeadLetters {
            producer: Producer::new(cfg, "bluetick-sink-dead-letters", None)?,
            topic: cfg.dead_letter_topic.clone(),
        })
    }

    /// Sends every rejected line and waits for the broker's acks; only then may the batch's
    /// offsets be committed.
    pub async fn send(
        &self,
        batch: &Batch,
        rejects: &[Reject],
        topic_of: impl Fn(Source) -> String,
    ) -> Result<(), DeadLetterError> {
        let error = |source| DeadLetterError {
            topic: self.topic.clone(),
            source,
        };
        let mut pending = Vec::with_capacity(rejects.len());
        for reject in rejects {
            let Some((record, payload)) = batch.line(reject.line) else {
                continue;
            };
            let source = format!(
                "{}/{}/{}",
                topic_of(record.source),
                record.partition,
                record.offset
            );
            // An event alone, as a record of its own: `bluetick replay` sends it back as is.
            let payload = match record.source {
                Source::Events => record::alone(record.format, payload),
                Source::Security => payload.to_vec(),
            };
            let headers: [(&str, &[u8]); 3] = [
                (HEADER_KIND, b"event"),
                (HEADER_ERROR, reject.reason.as_bytes()),
                (HEADER_SOURCE, source.as_bytes()),
            ];
            self.producer
                .enqueue_with_headers(&self.topic, &payload, &headers, &mut pending)
                .map_err(error)?;
        }
        Producer::settle(pending, Instant::now() + ACK_TIMEOUT)
            .await
            .map_err(error)
    }
}
