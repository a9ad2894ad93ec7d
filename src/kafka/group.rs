//! Group commit: the events of concurrent requests share one record.
//!
//! librdkafka's cost is per record: a copy into its queue, a delivery report, and a wake-up of
//! the request waiting for it. A 1-status webhook makes one small record, so at thousands of
//! requests a second those costs, not the events, dominate the producer side. Here requests
//! hand their encoded events to one flusher task, which appends them to a shared record (the
//! framing is the same JSON Lines, see `model::record`) and sends it once it reaches
//! [`record::TARGET_BYTES`], once nothing more is queued, or `window` after its first events,
//! whichever comes first; the broker's verdict on that record is then told to every request in
//! it.
//!
//! Invariant: a request learns "acked" only from the verdict of the record holding its events,
//! so a 200 still means the broker has them. A refused or failed record fails every request in
//! it (each answers 503; Meta's retries carry the same event ids, deduplicated downstream).
//! The hand-over queue is bounded; a full one is reported at once as [`ProduceError::QueueFull`].

use super::producer::{Pending, ProduceError, Producer, Verdict};
use crate::model::record;
use rdkafka::error::KafkaError;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// One request's events, whole lines, and who waits for their verdict.
struct Entry {
    lines: Vec<u8>,
    done: oneshot::Sender<Verdict>,
}

/// The hand-over side; cheap to share. Dropping the last handle ends the flusher once it has
/// sent what it holds.
pub struct GroupCommit {
    tx: mpsc::Sender<Entry>,
}

impl GroupCommit {
    /// Starts the flusher on the current runtime. `capacity` bounds the requests waiting to
    /// be appended (ingest passes its in-flight request limit, so it is never the tighter
    /// bound); `window` is how long a record may wait for more events (zero: only what is
    /// already queued joins it).
    pub fn spawn(producer: Producer, topic: String, window: Duration, capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        tokio::spawn(flush_loop(rx, producer, topic, window));
        GroupCommit { tx }
    }

    /// Hands over `lines` (one or more encoded events, no trailing separator); the verdict of
    /// the record that carries them arrives through `pending`.
    pub fn enqueue(&self, lines: Vec<u8>, pending: &mut Pending) -> Result<(), ProduceError> {
        let (done, verdict) = oneshot::channel();
        self.tx
            .try_send(Entry { lines, done })
            .map_err(|_| ProduceError::QueueFull)?;
        pending.push(verdict);
        Ok(())
    }
}

/// Builds records from the queue until every handle is gone.
async fn flush_loop(
    mut rx: mpsc::Receiver<Entry>,
    producer: Producer,
    topic: String,
    window: Duration,
) {
    let mut record = Vec::with_capacity(2 * record::TARGET_BYTES);
    while let Some(first) = rx.recv().await {
        let mut waiters = Vec::with_capacity(16);
        append(&mut record, &mut waiters, first);
        let deadline = Instant::now() + window;
        while record.len() < record::TARGET_BYTES {
            let next = match rx.try_recv() {
                Ok(entry) => Some(entry),
                Err(_) if window.is_zero() => None,
                Err(_) => tokio::time::timeout_at(deadline, rx.recv())
                    .await
                    .ok()
                    .flatten(),
            };
            match next {
                Some(entry) => append(&mut record, &mut waiters, entry),
                None => break,
            }
        }
        send(&producer, &topic, &record, waiters);
        record.clear();
    }
}

fn append(record: &mut Vec<u8>, waiters: &mut Vec<oneshot::Sender<Verdict>>, entry: Entry) {
    if !record.is_empty() {
        record.push(record::SEPARATOR);
    }
    record.extend_from_slice(&entry.lines);
    waiters.push(entry.done);
}

/// Enqueues the record and, once the broker answered, tells every request in it.
fn send(producer: &Producer, topic: &str, record: &[u8], waiters: Vec<oneshot::Sender<Verdict>>) {
    let mut pending = Pending::with_capacity(1);
    let delivery = match producer.enqueue_raw(topic, record, &mut pending) {
        Ok(()) => pending.pop(),
        Err(e) => return tell(waiters, Err(e)),
    };
    let Some(delivery) = delivery else {
        return tell(waiters, Err(KafkaError::Canceled));
    };
    tokio::spawn(async move {
        let verdict = delivery.await.unwrap_or(Err(KafkaError::Canceled));
        tell(waiters, verdict);
    });
}

fn tell(waiters: Vec<oneshot::Sender<Verdict>>, verdict: Verdict) {
    for w in waiters {
        // A request that gave up (503 on its deadline) has nobody listening.
        let _ = w.send(verdict.clone());
    }
}
