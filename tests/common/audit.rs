//! Reading back what the pipeline wrote, as an auditor would: every string cell of every table,
//! every record (payload and headers) of every topic from its first offset, each value run
//! through `privacy::detect` (numbers, ids that decode to one, user ids) and searched for
//! content markers.

use super::store::ch_text;
use super::unique;
use bluetick::config::Config;
use bluetick::model::skeleton::STRUCTURAL_HEADERS;
use bluetick::model::tables::BUSINESS_ID_COLUMNS;
use bluetick::privacy::detect;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// What a value must not contain: a content marker, a listed number, or anything the
/// detector finds. `place` names where the value was.
fn check(place: &str, value: &str, markers: &[&str], out: &mut Vec<String>) {
    for m in markers {
        if value.contains(m) {
            out.push(format!("{place}: holds {m:?}"));
        }
    }
    if let Some(hit) = detect::scan(value) {
        out.push(format!("{place}: {} ({})", hit.kind.as_str(), hit.sample));
    }
}

/// Every string cell of every table of `cfg`'s database; business identifiers exempt.
pub async fn scan_tables(cfg: &Config, markers: &[&str]) -> (Vec<String>, u64) {
    let db = &cfg.clickhouse.database;
    let columns = ch_text(
        cfg,
        &format!(
            "SELECT table, name FROM system.columns WHERE database = '{db}' \
             AND type LIKE '%String%' AND table IN (SELECT name FROM system.tables \
             WHERE database = '{db}' AND engine LIKE '%MergeTree%') FORMAT TSV"
        ),
    )
    .await;
    let (mut findings, mut cells) = (Vec::new(), 0);
    for line in columns.lines() {
        let Some((table, column)) = line.split_once('\t') else {
            continue;
        };
        if BUSINESS_ID_COLUMNS.contains(&column) {
            continue;
        }
        let values = ch_text(
            cfg,
            &format!("SELECT DISTINCT `{column}` FROM `{table}` FORMAT TSVRaw"),
        )
        .await;
        for v in values.lines() {
            cells += 1;
            check(&format!("{table}.{column}"), v, markers, &mut findings);
        }
    }
    (findings, cells)
}

/// Every record of `topic` from the start: payload values (JSON strings, each line of JSON
/// Lines; raw text otherwise) and header values. Returns the findings and the records read.
pub fn scan_topic(brokers: &str, topic: &str, markers: &[&str]) -> (Vec<String>, u64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("auditor"))
        .set("enable.auto.commit", "false")
        .set("log_level", "3")
        .create()
        .expect("consumer");
    let timeout = Duration::from_secs(10);
    let meta = consumer
        .fetch_metadata(Some(topic), timeout)
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0i64;
    for t in meta.topics() {
        for p in t.partitions() {
            let (lo, hi) = consumer
                .fetch_watermarks(topic, p.id(), timeout)
                .expect("watermarks");
            remaining += hi - lo;
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("partition");
        }
    }
    consumer.assign(&tpl).expect("assign");
    let (mut findings, mut read) = (Vec::new(), 0u64);
    let deadline = Instant::now() + Duration::from_secs(60);
    while (read as i64) < remaining && Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        read += 1;
        let place = format!("{topic}/{}/{}", m.partition(), m.offset());
        if let Some(headers) = m.headers() {
            for h in headers
                .iter()
                .filter(|h| !STRUCTURAL_HEADERS.contains(&h.key))
            {
                let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                check(
                    &format!("{place} header {}", h.key),
                    &value,
                    markers,
                    &mut findings,
                );
            }
        }
        let payload = m.payload().unwrap_or_default();
        for line in payload.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<serde_json::Value>(line) {
                Ok(v) => walk(&place, None, &v, markers, &mut findings),
                Err(_) => check(
                    &place,
                    &String::from_utf8_lossy(line),
                    markers,
                    &mut findings,
                ),
            }
        }
    }
    assert_eq!(read as i64, remaining, "read {topic} to its end");
    (findings, read)
}

fn walk(
    place: &str,
    key: Option<&str>,
    v: &serde_json::Value,
    markers: &[&str],
    out: &mut Vec<String>,
) {
    match v {
        serde_json::Value::String(s) if !key.is_some_and(|k| BUSINESS_ID_COLUMNS.contains(&k)) => {
            check(&format!("{place} {}", key.unwrap_or("")), s, markers, out);
        }
        serde_json::Value::Array(items) => {
            items.iter().for_each(|i| walk(place, key, i, markers, out))
        }
        serde_json::Value::Object(map) => {
            for (k, item) in map {
                check(&format!("{place} key"), k, markers, out);
                walk(place, Some(k), item, markers, out);
            }
        }
        _ => {}
    }
}

/// Every topic of `cfg`: events, security events, dead letters.
pub fn scan_topics(cfg: &Config, markers: &[&str]) -> (Vec<String>, u64) {
    let k = &cfg.kafka;
    let (mut findings, mut read) = (Vec::new(), 0);
    for topic in [&k.events_topic, &k.security_topic, &k.dead_letter_topic] {
        let (f, n) = scan_topic(&k.brokers, topic, markers);
        findings.extend(f);
        read += n;
    }
    (findings, read)
}
