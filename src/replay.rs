//! `bluetick replay`: after an operator fixed what made the sink refuse events (a schema, a
//! ClickHouse rule, a sink too old for an event version), the dead letters go back where they
//! came from and the sink stores them.
//!
//! What is replayed is the sink's dead letters: each is one event line, byte for byte, with
//! the topic, partition and offset it came from (`bluetick-source`) and why it was refused
//! (`bluetick-error`). Events hold metadata only, so a replay moves no content. The skeletons
//! ingest keeps of bodies it could not parse are never replayable: the body was not kept.
//!
//! A replay re-produces each selected line to its source topic and lets the sink do the rest,
//! so the sink's rules apply again: rows past retention are skipped, people erased since are
//! dropped. It then waits until the sink's group committed past every replayed record and
//! reads the dead-letter topic for the ones refused again. Replaying twice is harmless: the
//! event ids make the copies one row.
//!
//! Without `--apply` it only counts what it would replay.

use crate::config::Config;
use crate::kafka::read::{self, Scan};
use crate::kafka::{ProduceError, Producer, SetupError};
use crate::model::skeleton::{HEADER_ERROR, HEADER_KIND, HEADER_SOURCE};
use crate::model::tables::Table;
use crate::model::{proto, record, EventKind};
use rdkafka::consumer::Consumer as _;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, Instant};

/// Header on a replayed record: the dead letter it came from.
pub const HEADER_REPLAYED_FROM: &str = "bluetick-replayed-from";

/// Records acked per round: bounded by the producer's queue.
const CHUNK: usize = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("replaying to Kafka: {0}")]
    Produce(#[from] ProduceError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("writing the summary: {0}")]
    Io(#[from] std::io::Error),
    #[error("reading the dead-letter topic: {0}")]
    Join(String),
}

/// Which dead letters to replay. Every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The refusal reason contains this text.
    pub reason: Option<String>,
    /// The event's table (`message_status`, …, or `unknown` for lines that do not decode).
    pub table: Option<String>,
    /// Dead-lettered at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// Dead-lettered before this time (Unix ms).
    pub until_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub filter: Filter,
    /// Replay; without it, only count.
    pub apply: bool,
    /// How long to wait for the sink to commit past the replayed records.
    pub wait: Duration,
}

/// What a replay found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Dead letters read.
    pub read: u64,
    /// Skeletons of unparsed webhooks: never replayable.
    pub skeletons: u64,
    /// Dead letters the filter left out.
    pub filtered_out: u64,
    /// Selected, per (table, reason).
    pub selected: BTreeMap<(String, String), u64>,
    /// Records produced back to their topics.
    pub replayed: u64,
    /// The sink committed past every replayed record within the wait.
    pub settled: bool,
    /// Replayed records the sink dead-lettered again, per reason.
    pub still_failing: BTreeMap<String, u64>,
}

impl Summary {
    pub fn selected_total(&self) -> u64 {
        self.selected.values().sum()
    }

    pub fn failing_total(&self) -> u64 {
        self.still_failing.values().sum()
    }
}

/// One dead letter selected for replay.
struct Candidate {
    topic: String,
    line: Vec<u8>,
    origin: String,
}

pub async fn run(
    cfg: &Config,
    opts: &Options,
    out: &mut impl Write,
) -> Result<Summary, ReplayError> {
    let k = &cfg.kafka;
    writeln!(out, "reading {} …", k.dead_letter_topic)?;
    let (candidates, mut summary, before) = {
        let (kafka, filter) = (k.clone(), opts.filter.clone());
        blocking(move || select(&kafka, &filter)).await??
    };
    print_selection(&summary, out)?;
    if !opts.apply || candidates.is_empty() {
        if !opts.apply && !candidates.is_empty() {
            writeln!(
                out,
                "dry run: nothing replayed; run again with --apply to replay these"
            )?;
        }
        return Ok(summary);
    }

    let written = produce(cfg, &candidates, out).await?;
    summary.replayed = written.len() as u64;
    writeln!(
        out,
        "replayed {} records; waiting for the sink (group {}) …",
        summary.replayed, cfg.sink.group_id
    )?;
    summary.settled = wait_committed(cfg, &written, opts.wait, out).await?;

    let sources: BTreeSet<String> = written
        .iter()
        .map(|(topic, p, o)| format!("{topic}/{p}/{o}"))
        .collect();
    let kafka = k.clone();
    summary.still_failing = blocking(move || refused_again(&kafka, &before, &sources)).await??;
    print_outcome(&summary, out)?;
    Ok(summary)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ReplayError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ReplayError::Join(e.to_string()))
}

/// Reads the whole dead-letter topic and picks what the filter selects.
fn select(
    kafka: &crate::config::KafkaConfig,
    filter: &Filter,
) -> Result<(Vec<Candidate>, Summary, Scan), SetupError> {
    let mut summary = Summary::default();
    let mut candidates = Vec::new();
    let sources = [kafka.events_topic.as_str(), kafka.security_topic.as_str()];
    let scan = read::scan(
        kafka,
        &kafka.dead_letter_topic,
        |_| None,
        u64::MAX,
        |m| {
            summary.read += 1;
            let headers = read::headers(m);
            let header = |key: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            let source = header(HEADER_SOURCE);
            let topic = source_topic(&source);
            if header(HEADER_KIND) != "event" || !sources.contains(&topic) {
                summary.skeletons += 1;
                return;
            }
            let line = m.payload().unwrap_or_default();
            let table = table_of(line, topic == kafka.security_topic);
            let reason = header(HEADER_ERROR);
            let at = m.timestamp().to_millis().unwrap_or(0);
            if !filter.selects(&table, &reason, at) {
                summary.filtered_out += 1;
                return;
            }
            *summary.selected.entry((table, reason)).or_default() += 1;
            candidates.push(Candidate {
                topic: topic.to_string(),
                line: line.to_vec(),
                origin: format!(
                    "{}/{}/{}",
                    kafka.dead_letter_topic,
                    m.partition(),
                    m.offset()
                ),
            });
        },
    )?;
    Ok((candidates, summary, scan))
}

impl Filter {
    fn selects(&self, table: &str, reason: &str, at_ms: i64) -> bool {
        self.reason.as_deref().map_or(true, |r| reason.contains(r))
            && self.table.as_deref().map_or(true, |t| t == table)
            && self.since_ms.map_or(true, |s| at_ms >= s)
            && self.until_ms.map_or(true, |u| at_ms < u)
    }
}

/// `topic` of a `bluetick-source` header `topic/partition/offset` (topic names hold no `/`).
fn source_topic(source: &str) -> &str {
    source.split('/').next().unwrap_or_default()
}

/// The table an event line belongs to, or `unknown` when it does not decode.
fn table_of(line: &[u8], security: bool) -> String {
    if security {
        return Table::SecurityEvent.name().to_string();
    }
    #[derive(serde::Deserialize)]
    struct Kind {
        kind: EventKind,
    }
    let kind = match record::format_of(line) {
        record::Format::Json => serde_json::from_slice::<Kind>(line).ok().map(|k| k.kind),
        record::Format::Protobuf => record::lines(line)
            .next()
            .and_then(|r| proto::kind_of(&line[r])),
    };
    kind.map_or_else(|| "unknown".to_string(), |k| k.table().name().to_string())
}

/// Produces every candidate back to its topic, in chunks the producer's queue holds; returns
/// where each landed.
async fn produce(
    cfg: &Config,
    candidates: &[Candidate],
    out: &mut impl Write,
) -> Result<Vec<(String, i32, i64)>, ReplayError> {
    let producer = Producer::new(&cfg.kafka, "bluetick-replay", None)?;
    let mut written = Vec::with_capacity(candidates.len());
    for chunk in candidates.chunks(CHUNK) {
        let mut pending = Vec::with_capacity(chunk.len());
        for c in chunk {
            let headers: [(&str, &[u8]); 1] = [(HEADER_REPLAYED_FROM, c.origin.as_bytes())];
            producer.enqueue_with_headers(&c.topic, &c.line, &headers, &mut pending)?;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let offsets = Producer::settle_offsets(pending, deadline).await?;
        for (c, (partition, offset)) in chunk.iter().zip(offsets) {
            written.push((c.topic.clone(), partition, offset));
        }
        if candidates.len() > CHUNK {
            writeln!(out, "  {} / {} replayed", written.len(), candidates.len())?;
        }
    }
    Ok(written)
}

/// Waits until the sink's group committed past every written record, or `wait` passed.
async fn wait_committed(
    cfg: &Config,
    written: &[(String, i32, i64)],
    wait: Duration,
    out: &mut impl Write,
) -> Result<bool, ReplayError> {
    let mut last: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (topic, p, o) in written {
        let e = last.entry((topic.clone(), *p)).or_insert(*o);
        *e = (*e).max(*o);
    }
    let deadline = Instant::now() + wait;
    let mut next_note = Instant::now() + Duration::from_secs(10);
    loop {
        let (kafka, group, want) = (cfg.kafka.clone(), cfg.sink.group_id.clone(), last.clone());
        let behind = blocking(move || behind(&kafka, &group, &want)).await??;
        if behind == 0 {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            writeln!(
                out,
                "the sink has not committed past {behind} of the replayed partitions within {} s",
                wait.as_secs()
            )?;
            return Ok(false);
        }
        if Instant::now() >= next_note {
            writeln!(
                out,
                "  waiting for the sink: {behind} partitions not committed past the replay yet"
            )?;
            next_note += Duration::from_secs(10);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How many (topic, partition) of `want` the group has not committed past.
fn behind(
    kafka: &crate::config::KafkaConfig,
    group: &str,
    want: &BTreeMap<(String, i32), i64>,
) -> Result<usize, ReplayError> {
    let consumer = read::reader(kafka, group)?;
    let mut tpl = TopicPartitionList::new();
    for (topic, p) in want.keys() {
        tpl.add_partition(topic, *p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok(want
        .iter()
        .filter(|((topic, p), last)| {
            let done = committed.find_partition(topic, *p).map(|e| e.offset());
            !matches!(done, Some(Offset::Offset(next)) if next > **last)
        })
        .count())
}

/// Dead letters written since `before` whose source is one of the replayed records.
fn refused_again(
    kafka: &crate::config::KafkaConfig,
    before: &Scan,
    sources: &BTreeSet<String>,
) -> Result<BTreeMap<String, u64>, SetupError> {
    let mut again = BTreeMap::new();
    read::scan(
        kafka,
        &kafka.dead_letter_topic,
        |p| Some(before.ends.get(&p).copied().unwrap_or(0)),
        u64::MAX,
        |m| {
            let headers = read::headers(m);
            let value = |key: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            };
            if value(HEADER_SOURCE).is_some_and(|s| sources.contains(&s)) {
                *again
                    .entry(value(HEADER_ERROR).unwrap_or_default())
                    .or_default() += 1;
            }
        },
    )?;
    Ok(again)
}

fn print_selection(s: &Summary, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{} dead letters: {} selected, {} left out by the filter, {} skeletons of unparsed webhooks (not replayable: the body was never kept)",
        s.read,
        s.selected_total(),
        s.filtered_out,
        s.skeletons
    )?;
    for ((table, reason), n) in &s.selected {
        writeln!(out, "  {n:>8}  {table:<16} {reason}")?;
    }
    Ok(())
}

fn print_outcome(s: &Summary, out: &mut impl Write) -> std::io::Result<()> {
    let failing = s.failing_total();
    writeln!(
        out,
        "replayed {}: {} stored (or skipped by retention or an erasure), {} refused again{}",
        s.replayed,
        s.replayed.saturating_sub(failing),
        failing,
        if s.settled {
            ""
        } else {
            " so far (the sink has not caught up)"
        }
    )?;
    for (reason, n) in &s.still_failing {
        writeln!(out, "  {n:>8}  {reason}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_selects_only_what_it_names() {
        let f = Filter {
            reason: Some("throwIf".into()),
            table: Some("message_status".into()),
            since_ms: Some(1_000),
            until_ms: Some(2_000),
        };
        assert!(f.selects("message_status", "Code: 395. throwIf", 1_500));
        assert!(!f.selects("inbound_message", "Code: 395. throwIf", 1_500));
        assert!(!f.selects("message_status", "undecodable event", 1_500));
        assert!(!f.selects("message_status", "Code: 395. throwIf", 999));
        assert!(!f.selects("message_status", "Code: 395. throwIf", 2_000));
        assert!(Filter::default().selects("unknown", "", 0));
    }

    #[test]
    fn tables_come_from_the_event_kind() {
        assert_eq!(
            table_of(br#"{"kind":"status","v":2}"#, false),
            "message_status"
        );
        assert_eq!(table_of(br#"{"kind":"message"}"#, false), "inbound_message");
        assert_eq!(table_of(b"not an event", false), "unknown");
        assert_eq!(table_of(b"{}", true), "security_event");
        assert_eq!(source_topic("t.events/2/17"), "t.events");
    }
}
