//! Reading back what the pipeline wrote, as an auditor would: every string cell of every table,
//! every record (payload and headers) of every topic from its first offset, each value run
//! through the audit's value checks (`bluetick::audit::values`: numbers, ids that decode to
//! one, user ids, content lengths) and searched for the test's content markers.

use super::store::ch_text;
use super::unique;
use bluetick::audit::values::Findings;
use bluetick::config::Config;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// The test's content markers and listed numbers found in `text`.
fn markers_in(place: &str, text: &str, markers: &[&str], out: &mut Vec<String>) {
    for m in markers.iter().filter(|m| text.contains(*m)) {
        out.push(format!("{place}: holds {m:?}"));
    }
}

/// What the audit's value checks found, as lines.
fn listed(findings: Findings) -> Vec<String> {
    findings
        .into_list()
        .into_iter()
        .map(|f| format!("{}: {} × {} ({})", f.place, f.count, f.check, f.sample))
        .collect()
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
    let (mut found, mut marked, mut cells) = (Findings::default(), Vec::new(), 0);
    for line in columns.lines() {
        let Some((table, column)) = line.split_once('\t') else {
            continue;
        };
        let values = ch_text(
            cfg,
            &format!("SELECT DISTINCT `{column}` FROM `{table}` FORMAT TSVRaw"),
        )
        .await;
        let place = format!("{table}.{column}");
        for v in values.lines() {
            cells += 1;
            found.value(&place, column, v);
            markers_in(&place, v, markers, &mut marked);
        }
    }
    marked.extend(listed(found));
    (marked, cells)
}

/// Every record of `topic` from the start: payload values (every string of every event,
/// protobuf events decoded with the schema, JSON Lines line by line; raw text otherwise) and
/// header values, and the raw bytes for the markers. Returns the findings and the records read.
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
    let (mut found, mut marked, mut read) = (Findings::default(), Vec::new(), 0u64);
    let deadline = Instant::now() + Duration::from_secs(60);
    while (read as i64) < remaining && Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        read += 1;
        let place = format!("{topic}/{}/{}", m.partition(), m.offset());
        let headers: Vec<(String, Vec<u8>)> = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| (x.key.to_string(), x.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        let payload = m.payload().unwrap_or_default();
        found.record(
            &place,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            payload,
        );
        markers_in(
            &place,
            &String::from_utf8_lossy(payload),
            markers,
            &mut marked,
        );
        for (k, v) in &headers {
            markers_in(
                &format!("{place} header {k}"),
                &String::from_utf8_lossy(v),
                markers,
                &mut marked,
            );
        }
    }
    assert_eq!(read as i64, remaining, "read {topic} to its end");
    marked.extend(listed(found));
    (marked, read)
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
