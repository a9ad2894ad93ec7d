//! Reading a topic between offsets, outside any consumer group: what the audit (every record
//! bluetick keeps) and replay (the dead letters, then what the sink dead-lettered again) do.
//! Blocking; run it on a blocking thread.
//!
//! The end of each partition is its high watermark when the read starts, so a read of a topic
//! that is still being written ends.

use super::{client_config, SetupError};
use crate::config::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(15);

/// How long a read may take before it returns what it has (`Scan::complete` false).
const READ_LIMIT: Duration = Duration::from_secs(120);

/// What one read covered.
#[derive(Debug, Default, Clone)]
pub struct Scan {
    pub read: u64,
    /// Every record in the range was read (not cut by `max_per_partition` or time).
    pub complete: bool,
    /// Per partition, the offset the read ended at (the high watermark when it started).
    pub ends: BTreeMap<i32, i64>,
}

/// A consumer for reading by assignment: its group id is only a name (nothing is joined or
/// committed).
pub fn reader(kafka: &KafkaConfig, name: &str) -> Result<BaseConsumer, SetupError> {
    Ok(client_config(kafka)?
        .set("group.id", name)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()?)
}

/// Low and high watermarks of each partition of `topic`.
pub fn watermarks(
    consumer: &BaseConsumer,
    topic: &str,
) -> Result<BTreeMap<i32, (i64, i64)>, SetupError> {
    let meta = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    let mut out = BTreeMap::new();
    for p in meta.topics().iter().flat_map(|t| t.partitions()) {
        out.insert(p.id(), consumer.fetch_watermarks(topic, p.id(), TIMEOUT)?);
    }
    Ok(out)
}

/// Reads `topic` from `from(partition)` (the low watermark where `None`) up to each
/// partition's current end, at most `max_per_partition` records each, calling `visit` on
/// every record.
pub fn scan(
    kafka: &KafkaConfig,
    topic: &str,
    from: impl Fn(i32) -> Option<i64>,
    max_per_partition: u64,
    mut visit: impl FnMut(&BorrowedMessage<'_>),
) -> Result<Scan, SetupError> {
    let consumer = reader(kafka, "bluetick-reader")?;
    let mut tpl = TopicPartitionList::new();
    let mut scan = Scan {
        complete: true,
        ..Scan::default()
    };
    let mut want = 0u64;
    let mut stops = BTreeMap::new();
    for (partition, (low, high)) in watermarks(&consumer, topic)? {
        scan.ends.insert(partition, high);
        let start = from(partition).unwrap_or(low).clamp(low, high);
        let n = (high - start).max(0) as u64;
        scan.complete &= n <= max_per_partition;
        let stop = start + n.min(max_per_partition) as i64;
        if stop > start {
            want += (stop - start) as u64;
            stops.insert(partition, stop);
            tpl.add_partition_offset(topic, partition, Offset::Offset(start))?;
        }
    }
    if want == 0 {
        return Ok(scan);
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + READ_LIMIT;
    while scan.read < want && Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        use rdkafka::message::Message as _;
        if stops
            .get(&m.partition())
            .map_or(true, |stop| m.offset() >= *stop)
        {
            continue;
        }
        scan.read += 1;
        visit(&m);
    }
    scan.complete &= scan.read >= want;
    Ok(scan)
}

/// Headers of a record as (key, value) pairs.
pub fn headers(m: &BorrowedMessage<'_>) -> Vec<(String, Vec<u8>)> {
    use rdkafka::message::{Headers as _, Message as _};
    m.headers()
        .map(|h| {
            h.iter()
                .map(|x| (x.key.to_string(), x.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default()
}
