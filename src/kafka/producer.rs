//! An idempotent, `acks=all`, compressed producer whose queue is bounded, and the delivery
//! futures a caller awaits before it tells anyone the records are safe (ingest before its 200,
//! the sink before it commits a batch whose lines it dead-lettered).
//!
//! Invariant: records are enqueued without waiting; a full queue is reported at once
//! ([`ProduceError::QueueFull`]) so the request can answer 503 instead of buffering without
//! bound. rdkafka copies each payload, so callers may reuse their encode buffer.
//!
//! Delivery reports are served by a task on the async runtime the producer was made on, not
//! by a thread: librdkafka writes to a pipe when its report queue stops being empty, and the
//! task, woken by the pipe like any socket, hands each report to the request awaiting it.
//! A thread of its own cost one more sleep and wake-up per produce batch, and then had to
//! wake the runtime's thread; on a virtual machine, where each switch is dear, that thread
//! was ~5 % of ingest's CPU. (rdkafka's `FutureProducer` is worse still: it polls in 100 ms
//! slices that each end in a spin.)

use super::client_config;
use crate::config::KafkaConfig;
use crate::health::Watch;
use rdkafka::bindings as rd;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;
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
    /// delivery-report task (so the runtime it runs on) both work.
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

/// Ends the delivery-report task when the last [`Producer`] handle is dropped.
struct Poller {
    task: tokio::task::AbortHandle,
}

impl Poller {
    /// The task runs on the current tokio runtime; outside one this is an error.
    fn spawn(producer: Arc<BaseProducer<Acks>>) -> std::io::Result<Self> {
        tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
        let (notify, woken) = pipe::pipe()?;
        let reports = Reports::watch(producer, notify.into_nonblocking_fd()?);
        let task = tokio::spawn(reports.serve(woken)).abort_handle();
        Ok(Poller { task })
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// librdkafka's report queue (its main queue: delivery reports, errors, statistics, logs),
/// set to write to `notify` whenever it stops being empty.
///
/// Invariant: librdkafka writes to `notify` only while this value lives; dropping it turns
/// the writes off before the pipe is closed.
struct Reports {
    producer: Option<Arc<BaseProducer<Acks>>>,
    queue: *mut rd::rd_kafka_queue_t,
    _notify: OwnedFd,
}

// SAFETY: librdkafka's queue handles may be used from any thread; `queue` is only passed to
// librdkafka's thread-safe queue functions.
unsafe impl Send for Reports {}

impl Reports {
    fn watch(producer: Arc<BaseProducer<Acks>>, notify: OwnedFd) -> Self {
        const WAKE: [u8; 1] = [1];
        // SAFETY: the client is alive (we hold it); the queue reference taken here is given
        // back in `drop`, after the writes to `notify` are turned off. librdkafka copies the
        // payload.
        let queue = unsafe {
            let queue = rd::rd_kafka_queue_get_main(producer.client().native_ptr());
            rd::rd_kafka_queue_io_event_enable(
                queue,
                notify.as_raw_fd(),
                WAKE.as_ptr().cast(),
                WAKE.len(),
            );
            queue
        };
        Reports {
            producer: Some(producer),
            queue,
            _notify: notify,
        }
    }

    /// Serves reports as the pipe says they arrive. librdkafka writes only when the queue was
    /// empty, so each wake-up empties the pipe first and then the whole queue: a report
    /// queued after that finds the queue empty and writes again.
    async fn serve(self, woken: pipe::Receiver) {
        let mut scratch = [0u8; 64];
        loop {
            self.empty_queue();
            if woken.readable().await.is_err() {
                return;
            }
            loop {
                match woken.try_read(&mut scratch) {
                    Ok(0) => return,
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => return,
                }
            }
        }
    }

    /// Hands every queued report to its callback ([`Acks`]); never blocks.
    fn empty_queue(&self) {
        let Some(producer) = &self.producer else {
            return;
        };
        // SAFETY: `queue` is a live reference to the client's main queue (see `watch`).
        while unsafe { rd::rd_kafka_queue_length(self.queue) } > 0 {
            producer.poll(Duration::ZERO);
        }
    }
}

impl Drop for Reports {
    fn drop(&mut self) {
        // SAFETY: turns the writes to `notify` off before it is closed (fields drop after
        // this), then gives back the reference taken in `watch`, while the client lives.
        unsafe {
            rd::rd_kafka_queue_io_event_enable(self.queue, -1, std::ptr::null(), 0);
            rd::rd_kafka_queue_destroy(self.queue);
        }
        // The last handle's drop joins librdkafka's threads: not on an async worker.
        if let Some(producer) = self.producer.take() {
            let _ = std::thread::Builder::new()
                .name("kafka-producer-close".into())
                .spawn(move || drop(producer));
        }
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
    ///
    /// Call it on the tokio runtime that is to serve its delivery reports.
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
            .map_err(|e| KafkaError::ClientCreation(format!("delivery report task: {e}")))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::mocking::MockCluster;

    /// Ingest serves its connections on single-threaded runtimes, so the reports must reach
    /// requests awaiting them on the very thread that serves the reports; and the client must
    /// close once its last handle is gone, not live on in the report task.
    #[test]
    fn reports_reach_tasks_on_one_thread_and_the_last_handle_closes_the_client() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let cluster = MockCluster::new(1).expect("mock cluster");
            cluster.create_topic("events", 1, 1).expect("topic");
            let cfg = KafkaConfig {
                brokers: cluster.bootstrap_servers(),
                linger_ms: 1,
                ..KafkaConfig::default()
            };
            let producer = Producer::new(&cfg, "test", None).expect("producer");
            let client = Arc::downgrade(&producer.inner);
            let requests: Vec<_> = (0..200)
                .map(|i| {
                    let producer = producer.clone();
                    tokio::spawn(async move {
                        let mut pending = Pending::new();
                        let payload = format!("record {i}");
                        producer.enqueue("events", None, payload.as_bytes(), &mut pending)?;
                        let deadline = Instant::now() + Duration::from_secs(10);
                        Producer::settle_offsets(pending, deadline).await
                    })
                })
                .collect();
            let mut written = Vec::new();
            for request in requests {
                written.extend(request.await.expect("task").expect("acked"));
            }
            written.sort_unstable();
            assert_eq!(written, (0..200).map(|o| (0, o)).collect::<Vec<_>>());

            drop(producer);
            let deadline = Instant::now() + Duration::from_secs(10);
            while client.strong_count() > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(client.strong_count(), 0, "client outlived its last handle");
        });
    }

    #[test]
    fn outside_a_runtime_making_a_producer_is_an_error_not_a_panic() {
        let cfg = KafkaConfig {
            brokers: "127.0.0.1:1".into(),
            ..KafkaConfig::default()
        };
        let made = Producer::new(&cfg, "test", None);
        assert!(
            matches!(&made, Err(KafkaError::ClientCreation(why)) if why.contains("report task")),
            "{:?}",
            made.err()
        );
    }
}
