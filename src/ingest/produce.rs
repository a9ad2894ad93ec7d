//! The Kafka side of ingest: an idempotent, `acks=all`, compressed producer whose queue is
//! bounded, and delivery futures a request awaits before it answers.
//!
//! Invariant: records are enqueued without waiting; a full queue is reported at once
//! ([`ProduceError::QueueFull`]) so the request can answer 503 instead of buffering without
//! bound. rdkafka copies each payload, so callers may reuse their encode buffer.

use crate::config::KafkaConfig;
use crate::kafka::client_config;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("producer queue is full")]
    QueueFull,
    #[error("record larger than the broker accepts")]
    TooLarge,
    #[error("broker did not ack in time")]
    Timeout,
    #[error("broker refused or was unreachable: {0}")]
    Failed(KafkaError),
}

impl From<KafkaError> for ProduceError {
    /// One place that classifies rdkafka errors.
    fn from(e: KafkaError) -> Self {
        match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::QueueFull) => ProduceError::QueueFull,
            Some(RDKafkaErrorCode::MessageSizeTooLarge) => ProduceError::TooLarge,
            Some(RDKafkaErrorCode::MessageTimedOut) => ProduceError::Timeout,
            _ => ProduceError::Failed(e),
        }
    }
}

/// Delivery futures of one request's records.
pub type Pending = Vec<DeliveryFuture>;

#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
}

impl Producer {
    /// Records are retried for `kafka.message_timeout_ms`, longer than a request waits: a
    /// request that gave up (503) may still see its records delivered, which is harmless
    /// (Meta's retry carries the same event ids, deduplicated downstream) and spares the
    /// idempotent producer the epoch reset that timed-out records force.
    pub fn new(cfg: &KafkaConfig, client_id: &str) -> Result<Self, KafkaError> {
        let inner = client_config(cfg)
            .set("client.id", client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &cfg.compression)
            .set("linger.ms", cfg.linger_ms.to_string())
            .set(
                "queue.buffering.max.messages",
                cfg.queue_max_messages.to_string(),
            )
            .set("queue.buffering.max.kbytes", cfg.queue_max_kib.to_string())
            .set("message.max.bytes", cfg.message_max_bytes.to_string())
            .set("message.timeout.ms", cfg.message_timeout_ms.to_string())
            .create()?;
        Ok(Producer { inner })
    }

    /// Enqueues one record and keeps its delivery future in `pending`. A record without a key
    /// goes where librdkafka's sticky partitioner is filling a batch, so records arriving
    /// together share one produce request and one compression pass.
    pub fn enqueue(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        pending: &mut Pending,
    ) -> Result<(), ProduceError> {
        let mut record = FutureRecord::to(topic).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        self.send(record, pending)
    }

    /// Enqueues a record with headers (dead letters carry why they were kept).
    pub fn enqueue_with_headers(
        &self,
        topic: &str,
        payload: &[u8],
        headers: &[(&str, &[u8])],
        pending: &mut Pending,
    ) -> Result<(), ProduceError> {
        let headers = headers.iter().fold(OwnedHeaders::new(), |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(*value),
            })
        });
        let record = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(payload)
            .headers(headers);
        self.send(record, pending)
    }

    fn send(
        &self,
        record: FutureRecord<'_, [u8], [u8]>,
        pending: &mut Pending,
    ) -> Result<(), ProduceError> {
        match self.inner.send_result(record) {
            Ok(delivery) => {
                pending.push(delivery);
                Ok(())
            }
            Err((e, _)) => Err(e.into()),
        }
    }

    /// Waits until the broker acked every record in `pending`, or `deadline` passes.
    pub async fn settle(pending: Pending, deadline: Instant) -> Result<(), ProduceError> {
        for delivery in pending {
            match tokio::time::timeout_at(deadline, delivery).await {
                Err(_) => return Err(ProduceError::Timeout),
                Ok(Err(_canceled)) => return Err(ProduceError::Failed(KafkaError::Canceled)),
                Ok(Ok(Err((e, _)))) => return Err(e.into()),
                Ok(Ok(Ok(_))) => {}
            }
        }
        Ok(())
    }

    /// Records enqueued and not yet acked or failed.
    pub fn queue_depth(&self) -> i32 {
        self.inner.in_flight_count()
    }

    /// Whether a broker answers a metadata request for `topic` within `timeout`.
    pub async fn reachable(&self, topic: &str, timeout: Duration) -> bool {
        let producer = self.inner.clone();
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .is_ok_and(|m| m.topics().iter().any(|t| t.error().is_none()))
        })
        .await
        .unwrap_or(false)
    }

    /// Delivers what is queued, for shutdown.
    pub fn flush(&self, timeout: Duration) -> Result<(), ProduceError> {
        Ok(self.inner.flush(timeout)?)
    }
}
