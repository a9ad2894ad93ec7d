//! A batch of Kafka records on their way to ClickHouse: payloads copied once into one reused
//! arena, split into lines (an events record holds one or more events, see `model::record`),
//! plus where each came from, so a rejected row can be traced to its record and the offsets
//! to commit are known.
//!
//! Invariant: `commit_offsets` covers exactly the records pushed since the last `clear`, so a
//! batch's offsets are committed only together with (after) all of its rows.

use crate::model::{record, Event, SecurityEvent, EVENT_VERSION, OLDEST_EVENT_VERSION};
use crate::privacy::IdKey;
use std::ops::Range;
use std::time::Duration;
use tokio::time::Instant;

/// Which subscribed topic a record came from; decides how it decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Events,
    Security,
}

/// When a batch is due: whichever bound is reached first.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub max_age: Duration,
}

/// Where a record came from, and how its events are encoded; its bytes are its lines'.
#[derive(Debug, Clone)]
pub struct Record {
    pub source: Source,
    pub format: record::Format,
    pub partition: i32,
    pub offset: i64,
}

/// Where one row-to-be lies: an event (a line of an events record) or a security event (a
/// whole record).
#[derive(Debug, Clone)]
struct Span {
    record: usize,
    bytes: Range<usize>,
}

#[derive(Debug)]
pub struct Batch {
    arena: Vec<u8>,
    records: Vec<Record>,
    spans: Vec<Span>,
    /// Next offset to consume per (source, partition): the last offset seen + 1.
    next_offsets: Vec<(Source, i32, i64)>,
    started: Option<Instant>,
}

/// A line that cannot become a row, and why (goes to the dead-letter topic).
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    /// Index of the line in its batch ([`Batch::line`]).
    pub line: usize,
    pub reason: String,
}

/// One line of a batch, decoded (borrowing the arena); an event is lent from the slot
/// [`Batch::decode_each`] reuses for every line.
#[derive(Debug)]
pub enum Line<'e, 'a> {
    Event(&'e Event<'a>),
    Security(SecurityEvent<'a>),
}

/// A batch's lines decoded at once, each tagged with its line index.
#[derive(Debug, Default)]
pub struct Decoded<'a> {
    pub events: Vec<(usize, Event<'a>)>,
    pub security: Vec<(usize, SecurityEvent<'a>)>,
    pub rejects: Vec<Reject>,
}

impl Batch {
    pub fn new() -> Self {
        Batch {
            arena: Vec::with_capacity(1 << 20),
            records: Vec::with_capacity(4096),
            spans: Vec::with_capacity(4096),
            next_offsets: Vec::new(),
            started: None,
        }
    }

    pub fn push(&mut self, source: Source, partition: i32, offset: i64, payload: &[u8]) {
        let start = self.arena.len();
        self.arena.extend_from_slice(payload);
        let index = self.records.len();
        let format = record::format_of(payload);
        match source {
            Source::Events => self.spans.extend(record::lines(payload).map(|r| Span {
                record: index,
                bytes: start + r.start..start + r.end,
            })),
            Source::Security => self.spans.push(Span {
                record: index,
                bytes: start..self.arena.len(),
            }),
        }
        self.records.push(Record {
            source,
            format,
            partition,
            offset,
        });
        match self
            .next_offsets
            .iter_mut()
            .find(|(s, p, _)| *s == source && *p == partition)
        {
            Some(entry) => entry.2 = entry.2.max(offset + 1),
            None => self.next_offsets.push((source, partition, offset + 1)),
        }
        self.started.get_or_insert_with(Instant::now);
    }

    /// Records (Kafka messages) in the batch.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Rows-to-be: events and security events.
    pub fn rows(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.arena.len()
    }

    /// Full by rows or bytes: write it now.
    pub fn is_full(&self, limits: &Limits) -> bool {
        self.spans.len() >= limits.max_rows || self.arena.len() >= limits.max_bytes
    }

    /// When the batch is due by age; `None` while empty.
    pub fn deadline(&self, limits: &Limits) -> Option<Instant> {
        self.started.map(|t| t + limits.max_age)
    }

    /// Line `index`: the record it came from, and its bytes.
    pub fn line(&self, index: usize) -> Option<(&Record, &[u8])> {
        let span = self.spans.get(index)?;
        Some((&self.records[span.record], &self.arena[span.bytes.clone()]))
    }

    /// The offsets that, committed, mark every record of this batch as done.
    pub fn commit_offsets(&self) -> &[(Source, i32, i64)] {
        &self.next_offsets
    }

    pub fn clear(&mut self) {
        self.arena.clear();
        self.records.clear();
        self.spans.clear();
        self.next_offsets.clear();
        self.started = None;
    }

    /// Decodes every line in its record's format, borrowing strings from the arena, and hands
    /// each to `each` with its index, in order: the caller turns it into a row while its bytes
    /// are still in cache, and nothing decoded outlives that call. A line that does not
    /// decode, or has a version this build does not know, comes as `Err(reason)`. Raw ids of
    /// version 1 events are keyed with `id_key` here, before anything else sees them.
    pub fn decode_each<'a>(
        &'a self,
        id_key: &IdKey,
        mut each: impl FnMut(usize, Result<Line<'_, 'a>, String>),
    ) {
        let mut event = Event::default();
        for (i, span) in self.spans.iter().enumerate() {
            let bytes = &self.arena[span.bytes.clone()];
            let record = &self.records[span.record];
            let line = match record.source {
                Source::Events => decode_event(record.format, bytes, id_key, &mut event)
                    .map(|()| Line::Event(&event)),
                Source::Security => serde_json::from_slice::<SecurityEvent>(bytes)
                    .map(Line::Security)
                    .map_err(|e| format!("undecodable security event: {e}")),
            };
            each(i, line);
        }
    }

    /// Every line decoded at once (for tests and tools; the sink uses [`decode_each`]).
    ///
    /// [`decode_each`]: Self::decode_each
    pub fn decode<'a>(&'a self, id_key: &IdKey) -> Decoded<'a> {
        let mut out = Decoded::default();
        self.decode_each(id_key, |i, line| match line {
            Ok(Line::Event(e)) => out.events.push((i, e.clone())),
            Ok(Line::Security(e)) => out.security.push((i, e)),
            Err(reason) => out.rejects.push(Reject { line: i, reason }),
        });
        out
    }
}

impl Default for Batch {
    fn default() -> Self {
        Batch::new()
    }
}

/// Decodes one event line into `event` and checks its version.
fn decode_event<'a>(
    format: record::Format,
    bytes: &'a [u8],
    id_key: &IdKey,
    event: &mut Event<'a>,
) -> Result<(), String> {
    record::decode_into(format, bytes, event).map_err(|e| format!("undecodable event: {e}"))?;
    if !(OLDEST_EVENT_VERSION..=EVENT_VERSION).contains(&event.v) {
        return Err(format!("unsupported event version {}", event.v));
    }
    event.key_legacy_ids(id_key);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventId, EventKind};

    fn key() -> IdKey {
        IdKey::new(b"id-key-0123456789abcdef")
    }

    fn limits() -> Limits {
        Limits {
            max_rows: 3,
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(1),
        }
    }

    fn event_json(v: u16) -> Vec<u8> {
        let e = Event {
            v,
            id: EventId(7),
            kind: EventKind::Status,
            ts: 1,
            waba_id: "w".into(),
            field: "messages".into(),
            ..Event::default()
        };
        serde_json::to_vec(&e).expect("json")
    }

    #[test]
    fn commit_offsets_are_one_past_the_highest_per_partition() {
        let mut b = Batch::new();
        b.push(Source::Events, 0, 10, b"a");
        b.push(Source::Events, 1, 4, b"b");
        b.push(Source::Events, 0, 11, b"c");
        b.push(Source::Security, 0, 2, b"d");
        assert_eq!(
            b.commit_offsets(),
            &[
                (Source::Events, 0, 12),
                (Source::Events, 1, 5),
                (Source::Security, 0, 3)
            ]
        );
        assert_eq!(b.line(2).map(|(_, p)| p), Some(&b"c"[..]));
        b.clear();
        assert!(b.commit_offsets().is_empty() && b.is_empty() && b.bytes() == 0);
    }

    #[test]
    fn due_by_rows_bytes_or_age_from_the_first_record() {
        let l = limits();
        let mut b = Batch::new();
        assert!(b.deadline(&l).is_none());
        let before = Instant::now();
        b.push(Source::Events, 0, 0, b"x");
        let deadline = b.deadline(&l).expect("armed by the first record");
        assert!(deadline >= before + l.max_age && deadline <= Instant::now() + l.max_age);
        assert!(!b.is_full(&l));
        b.push(Source::Events, 0, 1, b"x");
        b.push(Source::Events, 0, 2, b"x");
        assert!(b.is_full(&l));
        let mut big = Batch::new();
        big.push(Source::Events, 0, 0, &vec![b' '; 1 << 20]);
        assert!(big.is_full(&l));
        let mut lines = Batch::new();
        lines.push(Source::Events, 0, 0, b"x\ny\nz");
        assert!(lines.is_full(&l), "rows are counted, not records");
        assert_eq!((lines.len(), lines.rows()), (1, 3));
    }

    #[test]
    fn a_bad_line_is_rejected_alone_and_its_neighbours_become_rows() {
        let mut record = event_json(EVENT_VERSION);
        record.extend_from_slice(b"\n{not json\n");
        record.extend_from_slice(&event_json(EVENT_VERSION));
        let mut b = Batch::new();
        b.push(Source::Security, 3, 9, b"{}");
        b.push(Source::Events, 1, 41, &record);
        assert_eq!((b.len(), b.rows()), (2, 4));
        let d = b.decode(&key());
        assert_eq!(d.events.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(d.rejects.iter().map(|r| r.line).collect::<Vec<_>>(), [0, 2]);
        let (origin, bytes) = b.line(2).expect("the bad line");
        assert_eq!(bytes, b"{not json");
        assert_eq!((origin.partition, origin.offset), (1, 41));
        assert_eq!(
            b.commit_offsets(),
            &[(Source::Security, 3, 10), (Source::Events, 1, 42)]
        );
    }

    #[test]
    fn bad_records_are_rejected_with_a_reason_and_good_ones_borrow() {
        let mut b = Batch::new();
        b.push(Source::Events, 0, 0, &event_json(EVENT_VERSION));
        b.push(Source::Events, 0, 1, b"{not json");
        b.push(Source::Events, 0, 2, &event_json(99));
        let mut not_utf8 = event_json(EVENT_VERSION);
        let at = not_utf8.len() - 3;
        not_utf8[at] = 0xff;
        b.push(Source::Events, 0, 3, &not_utf8);
        b.push(
            Source::Security,
            0,
            0,
            br#"{"v":1,"received_ms":5,"source_ip":"127.0.0.1","reason":"bad_signature","route":"webhook"}"#,
        );
        let d = b.decode(&key());
        assert_eq!(d.events.len(), 1);
        assert!(matches!(
            d.events[0].1.waba_id,
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(d.security.len(), 1);
        let reasons: Vec<(usize, &str)> = d
            .rejects
            .iter()
            .map(|r| (r.line, r.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 3);
        assert_eq!(reasons[0].0, 1);
        assert!(reasons[0].1.starts_with("undecodable event"), "{reasons:?}");
        assert_eq!(reasons[1], (2, "unsupported event version 99"));
        assert_eq!(reasons[2].0, 3);
        assert!(reasons[2].1.contains("utf-8"), "{reasons:?}");
    }
}
