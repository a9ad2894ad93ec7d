//! An idempotent, `acks=all`, compressed producer whose queue is bounded, and the delivery
//! futures a caller awaits before it tells anyone the records are safe (ingest before its 200,
//! the sink before it commits a batch whose lines it dead-lettered).
//!
//! Invariant: records are enqueued without waiting; a full queue is reported at once
//! ([`ProduceError::QueueFull`]) so the request can answer 503 instead of buffering without
//! bound. rdkafka copies each payload, so callers may reuse their encode buffer.
//!
//! Delivery reports are served by a thread of our own rather than rdkafka's `FutureProducer`:
//! that one polls in 100 ms slices, and each slice ends by spinning through its last
//! fraction of a millisecond (the remaining time rounds down to a 0 ms poll), which costs
//! about 1 % of a core even when idle. Reports are handed over as they arrive whatever the
//! slice, so a 1 s slice serves them as fast and spins a tenth as often.

use super::client_config;
use crate::config::KafkaConfig;
use crate::health::Watch;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How long one poll of the delivery-report queue may block; also how long the polling
/// thread may outlive the last handle to the producer.
const POLL_SLICE: Duration = Duration::from_secs(1);

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

/// The broker's verdict on one record, sent by [`Acks`] to the request awaiting it: where it
/// was written (partition, offset), or why not.
type Verdict = Result<(i32, i64), KafkaError>;
type Waiter = Box<oneshot::Sender<Verdict>>;

/// Delivery futures of one request's records.
pub type Pending = Vec<oneshot::Receiver<Verdict>>;

type Record<'a> = BaseRecord<'a, [u8], [u8], Waiter>;

/// Why the brokers turned this client away: a setting is wrong, retrying cannot help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The handshake failed: a certificate not signed by `kafka.ssl_ca_file`, expired, or
    /// for another host.
    Tls,
    /// SASL credentials or mechanism refused.
    Auth,
}

/// What [`Producer::reachable`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    Up,
    Down,
    Refused(Refusal),
}

/// How often librdkafka reports statistics to a producer with a health watch.
pub const STATS_INTERVAL: Duration = Duration::from_secs(5);

/// How long a TLS or SASL failure keeps the producer reported as refused.
const REFUSAL_MEMORY: Duration = Duration::from_secs(60);

/// Hands each delivery report to the request waiting for it, and remembers the last time the
/// brokers refused the connection (TLS or SASL), so readiness can say so rather than only
/// "unreachable". The lock is taken on client errors and readiness checks, never per record.
#[derive(Default)]
struct Acks {
    refused: std::sync::Mutex<Option<(std::time::Instant, Refusal)>>,
    /// Beaten by librdkafka's statistics, which arrive only while its threads and our
    /// delivery-report thread both work.
    alive: Option<Watch>,
}

impl ClientContext for Acks {
    /// Statistics are only a heartbeat here: not parsed, so they cost no CPU.
    fn stats_raw(&self, _: &[u8]) {
        if let Some(w) = &self.alive {
            w.beat();
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let refusal = match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::SSL) => Some(Refusal::Tls),
            Some(RDKafkaErrorCode::Authentication) => Some(Refusal::Auth),
            _ => None,
        };
        if let (Some(r), Ok(mut last)) = (refusal, self.refused.lock()) {
            *last = Some((std::time::Instant::now(), r));
        }
        tracing::error!(error = %error, reason, "kafka client");
    }
}

impl Acks {
    fn recent_refusal(&self) -> Option<Refusal> {
        let last = *self.refused.lock().ok()?;
        last.filter(|(at, _)| at.elapsed() < REFUSAL_MEMORY)
            .map(|(_, r)| r)
    }
}

impl ProducerContext for Acks {
    type DeliveryOpaque = Waiter;

    fn delivery(&self, result: &DeliveryResult<'_>, waiter: Self::DeliveryOpaque) {
        let verdict = match result {
            Ok(msg) => Ok((msg.partition(), msg.offset())),
            Err((e, _)) => Err(e.clone()),
        };
        // The request may have given up (503 on its deadline); nobody to tell then.
        let _ = waiter.send(verdict);
    }
}

#[derive(Clone)]
pub struct Producer {
    inner: Arc<BaseProducer<Acks>>,
    _poller: Arc<Poller>,
}

/// Serves delivery reports until the last [`Producer`] handle is dropped.
struct Poller {
    stop: Arc<AtomicBool>,
}

impl Poller {
    fn spawn(producer: Arc<BaseProducer<Acks>>) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("kafka-acks".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    producer.poll(POLL_SLICE);
                }
            })?;
        Ok(Poller { stop })
    }
}

impl Drop for Poller {
    /// The thread ends within one poll slice and drops the producer there; not joined, so
    /// dropping a handle never blocks an async task.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Producer {
    /// Records are retried for `kafka.message_timeout_ms`, longer than a request waits: a
    /// request that gave up (503) may still see its records delivered, which is harmless
    /// (Meta's retry carries the same event ids, deduplicated downstream) and spares the
    /// idempotent producer the epoch reset that timed-out records force.
    ///
    /// With `alive`, librdkafka's statistics (every [`STATS_INTERVAL`]) beat it: a producer
    /// whose threads stopped stops beating.
    pub fn new(
        cfg: &KafkaConfig,
        client_id: &str,
        alive: Option<Watch>,
    ) -> Result<Self, KafkaError> {
        let mut config =
            client_config(cfg).map_err(|e| KafkaError::ClientCreation(e.to_string()))?;
        if let Some(w) = &alive {
            config.set(
                "statistics.interval.ms",
                STATS_INTERVAL.as_millis().to_string(),
            );
            w.beat();
        }
        let inner = config
            .set("client.id", client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &cfg.compression)
            .set("compression.level", cfg.compression_level.to_string())
            .set("linger.ms", cfg.linger_ms.to_string())
            .set(
                "queue.buffering.max.messages",
                cfg.queue_max_messages.to_string(),
            )
            .set("queue.buffering.max.kbytes", cfg.queue_max_kib.to_string())
            .set("message.max.bytes", cfg.message_max_bytes.to_string())
            .set("message.timeout.ms", cfg.message_timeout_ms.to_string())
            .create_with_context(Acks {
                alive,
                ..Acks::default()
            })?;
        let inner = Arc::new(inner);
        let poller = Poller::spawn(Arc::clone(&inner))
            .map_err(|e| KafkaError::ClientCreation(format!("delivery report thread: {e}")))?;
        Ok(Producer {
            inner,
            _poller: Arc::new(poller),
        })
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
        self.send(topic, pending, |record| match key {
            Some(key) => record.payload(payload).key(key),
            None => record.payload(payload),
        })
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
        self.send(topic, pending, |record| {
            record.payload(payload).headers(headers)
        })
    }

    fn send<'a>(
        &self,
        topic: &'a str,
        pending: &mut Pending,
        build: impl FnOnce(Record<'a>) -> Record<'a>,
    ) -> Result<(), ProduceError> {
        let (tx, rx) = oneshot::channel();
        let record = build(BaseRecord::with_opaque_to(topic, Box::new(tx)));
        match self.inner.send(record) {
            Ok(()) => {
                pending.push(rx);
                Ok(())
            }
            Err((e, _)) => Err(e.into()),
        }
    }

    /// Waits until the broker acked every record in `pending`, or `deadline` passes.
    pub async fn settle(pending: Pending, deadline: Instant) -> Result<(), ProduceError> {
        for delivery in pending {
            Self::delivered(delivery, deadline).await?;
        }
        Ok(())
    }

    /// As [`Producer::settle`], returning where each record was written, in order.
    pub async fn settle_offsets(
        pending: Pending,
        deadline: Instant,
    ) -> Result<Vec<(i32, i64)>, ProduceError> {
        let mut written = Vec::with_capacity(pending.len());
        for delivery in pending {
            written.push(Self::delivered(delivery, deadline).await?);
        }
        Ok(written)
    }

    async fn delivered(
        delivery: oneshot::Receiver<Verdict>,
        deadline: Instant,
    ) -> Result<(i32, i64), ProduceError> {
        match tokio::time::timeout_at(deadline, delivery).await {
            Err(_) => Err(ProduceError::Timeout),
            Ok(Err(_closed)) => Err(ProduceError::Failed(KafkaError::Canceled)),
            Ok(Ok(verdict)) => Ok(verdict?),
        }
    }

    /// Records enqueued and not yet acked or failed.
    pub fn queue_depth(&self) -> i32 {
        self.inner.in_flight_count()
    }

    /// Whether a broker answers a metadata request for `topic` within `timeout`, and if not,
    /// whether it refused this client's certificate check or credentials lately.
    pub async fn reachable(&self, topic: &str, timeout: Duration) -> Reach {
        let producer = self.inner.clone();
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || {
            let up = producer
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .is_ok_and(|m| m.topics().iter().any(|t| t.error().is_none()));
            match (up, producer.context().recent_refusal()) {
                (true, _) => Reach::Up,
                (false, Some(r)) => Reach::Refused(r),
                (false, None) => Reach::Down,
            }
        })
        .await
        .unwrap_or(Reach::Down)
    }

    /// Delivers what is queued, for shutdown.
    pub fn flush(&self, timeout: Duration) -> Result<(), ProduceError> {
        Ok(self.inner.flush(timeout)?)
    }
}
