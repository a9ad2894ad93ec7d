//! Reading topics back with a deadline, and a consumer group's progress.

use super::unique;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("record is JSON")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    /// The events of an events-topic record, whatever its format, as their JSON (protobuf
    /// events decoded with the schema first, as any consumer of the topic would).
    pub fn events(&self) -> Vec<serde_json::Value> {
        use bluetick::model::record;
        let format = record::format_of(&self.payload);
        record::lines(&self.payload)
            .map(|r| record::to_json(format, &self.payload[r]).expect("each event decodes"))
            .collect()
    }
}

/// Reads the events topic until `expected` events (lines of records) arrived; see [`consume`].
pub async fn consume_events(
    brokers: &str,
    topic: &str,
    expected: usize,
    within: Duration,
) -> Vec<Record> {
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    let count = |r: &Record| bluetick::model::record::count(&r.payload);
    tokio::task::spawn_blocking(move || consume_blocking(&brokers, &topic, expected, within, count))
        .await
        .expect("consumer thread")
}

/// Reads the security topic until its records count `expected` refusals (each record counts
/// the refusals of one source, reason and route in a window).
pub async fn consume_security(
    brokers: &str,
    topic: &str,
    expected: usize,
    within: Duration,
) -> Vec<Record> {
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    let count = |r: &Record| r.json()["count"].as_u64().unwrap_or(1) as usize;
    tokio::task::spawn_blocking(move || consume_blocking(&brokers, &topic, expected, within, count))
        .await
        .expect("consumer thread")
}

/// Reads `topic` from the beginning until `expected` records arrived (then `settle` longer,
/// to catch extras) or `within` passed. Returns what it read.
pub async fn consume(brokers: &str, topic: &str, expected: usize, within: Duration) -> Vec<Record> {
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || consume_blocking(&brokers, &topic, expected, within, |_| 1))
        .await
        .expect("consumer thread")
}

fn consume_blocking(
    brokers: &str,
    topic: &str,
    expected: usize,
    within: Duration,
    count: impl Fn(&Record) -> usize,
) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("log_level", "3")
        .create()
        .expect("consumer");
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let mut tpl = TopicPartitionList::new();
    for t in meta.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("partition");
        }
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + within;
    let mut settle_until: Option<Instant> = None;
    let mut out = Vec::new();
    let mut counted = 0;
    loop {
        let now = Instant::now();
        if now >= deadline || settle_until.is_some_and(|s| now >= s) {
            break;
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| (x.key.to_string(), x.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            let record = Record {
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers,
            };
            counted += count(&record);
            out.push(record);
        }
        if counted >= expected && settle_until.is_none() {
            settle_until = Some(Instant::now() + Duration::from_millis(1500));
        }
    }
    out
}

/// Sum over `topic`'s partitions of (high watermark, offset committed by `group`).
pub async fn group_progress(brokers: &str, group: &str, topic: &str) -> (i64, i64) {
    let (brokers, group, topic) = (brokers.to_string(), group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("log_level", "3")
            .create()
            .expect("consumer");
        let timeout = Duration::from_secs(10);
        let meta = consumer
            .fetch_metadata(Some(&topic), timeout)
            .expect("topic metadata");
        let mut tpl = TopicPartitionList::new();
        let mut high = 0;
        for t in meta.topics() {
            for p in t.partitions() {
                tpl.add_partition(&topic, p.id());
                let (_, hi) = consumer
                    .fetch_watermarks(&topic, p.id(), timeout)
                    .expect("watermarks");
                high += hi;
            }
        }
        let committed = consumer
            .committed_offsets(tpl, timeout)
            .expect("committed offsets");
        let done: i64 = committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(n) => Some(n),
                _ => None,
            })
            .sum();
        (high, done)
    })
    .await
    .expect("admin thread")
}

/// Waits until `group` has committed everything in `topic`.
pub async fn wait_committed(
    brokers: &str,
    group: &str,
    topic: &str,
    within: Duration,
) -> (i64, i64) {
    let deadline = Instant::now() + within;
    loop {
        let (high, done) = group_progress(brokers, group, topic).await;
        if (high == done && high > 0) || Instant::now() >= deadline {
            return (high, done);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
