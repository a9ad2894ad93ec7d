//! The sink's routing: each decoded line becomes its table's row, encoded as RowBinary the
//! moment it is decoded (the mapping lives in `model::rows`), unless its time is past the
//! table's retention (skipped and counted), it is about a person erased after it happened
//! (dropped and counted: see `erased`), or it is more than a day ahead of the sink's clock
//! (dead-lettered: it would make a partition that retention cannot drop).
//!
//! Nothing decoded outlives its line: a batch's rows are one byte buffer per table plus a
//! small reference per row, reused from batch to batch. Keeping every decoded event and row
//! struct of a 50,000-line batch (about 2 KB each) and moving them around was most of the
//! sink's cost before.

use super::batch::{Batch, Line, Reject};
use super::erased::Erased;
use crate::config::RetentionConfig;
use crate::model::rows;
use crate::model::tables::{day_of, first_kept_day, Table};
use crate::privacy::IdKey;
use std::borrow::Cow;

/// Rows later than this past the sink's clock are refused: they would create partitions
/// that retention cannot drop until their time comes.
const MAX_FUTURE_SECS: u64 = 86_400;

/// One table's rows of a batch: their RowBinary bytes back to back and a reference per row,
/// both in arrival order, so that an INSERT of consecutive rows sends a slice of the bytes as
/// they are (`insert` sorts by time only when a batch spans more days than one INSERT may).
#[derive(Debug, Default)]
pub struct Encoded {
    bytes: Vec<u8>,
    rows: Vec<RowRef>,
}

/// Where one encoded row lies, and what the sink reports about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowRef {
    /// The batch line it came from (`Batch::line`).
    pub line: usize,
    /// Event time, seconds: the row's partition day.
    pub ts: u32,
    /// When ingest received the event, for the end-to-end delay.
    pub received_ms: u64,
    start: u32,
    end: u32,
}

#[cfg(test)]
impl RowRef {
    /// A reference to no bytes, for tests of what only looks at lines and times.
    pub(crate) fn at(line: usize, ts: u32) -> Self {
        RowRef {
            line,
            ts,
            received_ms: 0,
            start: 0,
            end: 0,
        }
    }
}

impl Encoded {
    /// References to the rows, in arrival order.
    pub fn rows(&self) -> &[RowRef] {
        &self.rows
    }

    /// The RowBinary bytes of one row of this table.
    pub fn bytes(&self, row: &RowRef) -> &[u8] {
        &self.bytes[row.start as usize..row.end as usize]
    }

    /// The bytes of `rows` back to back: borrowed when they lie so in this table's buffer
    /// (consecutive rows of [`rows`](Self::rows)), gathered otherwise.
    pub fn bytes_of(&self, rows: &[RowRef]) -> Cow<'_, [u8]> {
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Cow::Borrowed(&[]);
        };
        if rows.windows(2).all(|w| w[0].end == w[1].start) {
            return Cow::Borrowed(&self.bytes[first.start as usize..last.end as usize]);
        }
        let mut out = Vec::with_capacity(rows.iter().map(|r| (r.end - r.start) as usize).sum());
        for row in rows {
            out.extend_from_slice(self.bytes(row));
        }
        Cow::Owned(out)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.rows.clear();
    }

    /// Appends one row written by `encode`; on its error nothing is kept.
    fn push<E>(
        &mut self,
        line: usize,
        ts: u64,
        received_ms: u64,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let start = self.bytes.len();
        encode(&mut self.bytes)?;
        self.rows.push(RowRef {
            line,
            // Event times past 2106 cannot be stored; the window refused them already.
            ts: u32::try_from(ts).unwrap_or(u32::MAX),
            received_ms,
            start: start as u32,
            end: self.bytes.len() as u32,
        });
        Ok(())
    }
}

/// A batch's rows per table, and what became of the lines that are not rows.
#[derive(Debug, Default)]
pub struct Rows {
    tables: [Encoded; Table::ALL.len()],
    /// Rows not written because they are already past their table's retention.
    pub expired: Vec<(Table, usize)>,
    /// Lines not written because their person was erased after the event.
    pub erased: Vec<usize>,
    pub rejects: Vec<Reject>,
}

/// What the sink accepts by event time: not past retention, not from the future.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub now_secs: u64,
    pub first_kept_day: [u64; Table::ALL.len()],
}

impl Window {
    pub fn new(now_secs: u64, retention: &RetentionConfig) -> Self {
        Window {
            now_secs,
            first_kept_day: Table::ALL
                .map(|t| first_kept_day(now_secs, t.retention_days(retention))),
        }
    }

    fn check(&self, table: Table, ts: u64) -> Verdict {
        if ts > self.now_secs + MAX_FUTURE_SECS {
            return Verdict::Reject(format!(
                "event time {ts} is more than a day after the sink's clock ({})",
                self.now_secs
            ));
        }
        if day_of(ts) < self.first_kept_day[table.index()] {
            return Verdict::Expired;
        }
        Verdict::Keep
    }
}

enum Verdict {
    Keep,
    Expired,
    Reject(String),
}

impl Rows {
    /// Decodes and routes every line of `batch` (see [`route_into`](Self::route_into)).
    pub fn route(batch: &Batch, id_key: &IdKey, window: &Window, erased: &Erased) -> Rows {
        let mut rows = Rows::default();
        rows.route_into(batch, id_key, window, erased);
        rows
    }

    /// Decodes each line of `batch` and encodes it as its table's row, reusing this value's
    /// buffers; whatever they held is dropped first.
    pub fn route_into(&mut self, batch: &Batch, id_key: &IdKey, window: &Window, erased: &Erased) {
        self.clear();
        batch.decode_each(id_key, |line, decoded| {
            self.push(line, decoded, window, erased)
        });
    }

    /// The rows of `table`.
    pub fn table(&self, table: Table) -> &Encoded {
        &self.tables[table.index()]
    }

    fn clear(&mut self) {
        self.tables.iter_mut().for_each(Encoded::clear);
        self.expired.clear();
        self.erased.clear();
        self.rejects.clear();
    }

    /// Routes one decoded line: its table's row, or expired, erased or rejected.
    fn push(
        &mut self,
        line: usize,
        decoded: Result<Line<'_, '_>, String>,
        window: &Window,
        erased: &Erased,
    ) {
        let decoded = match decoded {
            Ok(decoded) => decoded,
            Err(reason) => return self.reject(line, reason),
        };
        let (table, ts, received_ms) = match &decoded {
            Line::Event(e) => (e.kind.table(), e.ts, e.received_ms),
            // A security event's time is when it was received.
            Line::Security(e) => (Table::SecurityEvent, e.received_ms / 1000, e.received_ms),
        };
        match window.check(table, ts) {
            Verdict::Keep => {}
            Verdict::Expired => return self.expired.push((table, line)),
            Verdict::Reject(reason) => return self.reject(line, reason),
        }
        let encoded = &mut self.tables[table.index()];
        let written = match &decoded {
            Line::Event(e) if erased.covers(e) => return self.erased.push(line),
            Line::Event(e) => encoded.push(line, ts, received_ms, |out| rows::encode(e, out)),
            Line::Security(e) => {
                encoded.push(line, ts, received_ms, |out| rows::encode_security(e, out))
            }
        };
        if let Err(e) = written {
            self.reject(line, e.to_string());
        }
    }

    fn reject(&mut self, line: usize, reason: String) {
        self.rejects.push(Reject { line, reason });
    }

    /// Rows to write, over all tables.
    pub fn len(&self) -> usize {
        self.tables.iter().map(Encoded::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RetentionConfig;
    use crate::model::{Event, EventId, EventKind, SecurityEvent, EVENT_VERSION};
    use crate::privacy::{Pepper, Person};
    use crate::sink::batch::Source;

    const NOW: u64 = 1_795_521_600;

    fn status(ts: u64) -> Event<'static> {
        let person = Person::protect(&Pepper::new(b"pepper-pepper-pepper"), "919876544321");
        Event {
            v: EVENT_VERSION,
            id: EventId(ts as u128),
            kind: EventKind::Status,
            ts,
            received_ms: NOW * 1000,
            waba_id: "w".into(),
            field: "messages".into(),
            message_key: Some(crate::privacy::Pseudonym([1; 16])),
            status: Some("read".into()),
            person_masked: Some(person.masked),
            person_hash: Some(person.hash),
            billable: Some(true),
            error_code: Some(1 << 40),
            ..Event::default()
        }
    }

    fn security() -> SecurityEvent<'static> {
        SecurityEvent {
            v: 1,
            received_ms: NOW * 1000 + 250,
            source_ip: "10.0.0.1".into(),
            reason: "bad_signature".into(),
            route: "webhook".into(),
            count: 1,
        }
    }

    /// A batch as the sink receives it: one record of JSON lines, then a security record.
    fn batch(events: &[Event<'_>]) -> Batch {
        let lines: Vec<Vec<u8>> = events
            .iter()
            .map(|e| serde_json::to_vec(e).expect("json"))
            .collect();
        let mut b = Batch::new();
        b.push(Source::Events, 0, 0, &lines.join(&b'\n'));
        let sec = serde_json::to_vec(&security()).expect("json");
        b.push(Source::Security, 0, 0, &sec);
        b
    }

    fn route(batch: &Batch, erased: &Erased) -> Rows {
        let window = Window::new(NOW, &RetentionConfig::default());
        Rows::route(
            batch,
            &IdKey::new(b"id-key-0123456789abcdef"),
            &window,
            erased,
        )
    }

    fn encoded(e: &Event<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        rows::encode(e, &mut out).expect("encodes");
        out
    }

    #[test]
    fn lines_route_by_kind_and_time_as_their_rows_bytes() {
        let mut update = status(NOW);
        update.kind = EventKind::TemplateStatus;
        let mut inbound = status(NOW - 5);
        inbound.kind = EventKind::Message;
        let events = [
            status(NOW),
            status(NOW - 10),
            status(NOW - 91 * 86_400),
            status(NOW + 2 * 86_400),
            update.clone(),
            inbound.clone(),
        ];
        let b = batch(&events);
        let rows = route(&b, &Erased::default());
        let statuses = rows.table(Table::MessageStatus);
        let lines: Vec<usize> = statuses.rows().iter().map(|r| r.line).collect();
        assert_eq!(lines, [0, 1], "in arrival order");
        assert_eq!(statuses.bytes(&statuses.rows()[0]), encoded(&events[0]));
        assert_eq!(statuses.bytes(&statuses.rows()[1]), encoded(&events[1]));
        assert_eq!(statuses.rows()[1].ts, (NOW - 10) as u32);
        let both = [encoded(&events[0]), encoded(&events[1])].concat();
        let all = statuses.bytes_of(statuses.rows());
        assert!(
            matches!(all, Cow::Borrowed(_)),
            "consecutive rows are one slice"
        );
        assert_eq!(*all, both[..]);
        let reversed = [statuses.rows()[1], statuses.rows()[0]];
        let gathered = statuses.bytes_of(&reversed);
        assert!(matches!(gathered, Cow::Owned(_)));
        assert_eq!(
            *gathered,
            [encoded(&events[1]), encoded(&events[0])].concat()[..]
        );
        assert_eq!(rows.expired, [(Table::MessageStatus, 2)]);
        assert_eq!(rows.rejects.len(), 1);
        assert_eq!(rows.rejects[0].line, 3);
        let account = rows.table(Table::AccountEvent);
        assert_eq!(account.bytes(&account.rows()[0]), encoded(&update));
        let inbound_rows = rows.table(Table::InboundMessage);
        assert_eq!(
            inbound_rows.bytes(&inbound_rows.rows()[0]),
            encoded(&inbound)
        );
        let sec = rows.table(Table::SecurityEvent);
        assert_eq!(sec.rows()[0].line, 6);
        assert_eq!(sec.rows()[0].ts, NOW as u32);
        let mut expected = Vec::new();
        rows::encode_security(&security(), &mut expected).expect("encodes");
        assert_eq!(sec.bytes(&sec.rows()[0]), expected);
        assert_eq!(rows.len(), 5);
    }

    #[test]
    fn a_line_that_does_not_decode_is_rejected_and_buffers_are_reused() {
        let mut b = batch(&[status(NOW)]);
        b.push(Source::Events, 0, 1, b"{not json");
        let window = Window::new(NOW, &RetentionConfig::default());
        let key = IdKey::new(b"id-key-0123456789abcdef");
        let mut rows = Rows::default();
        rows.route_into(&b, &key, &window, &Erased::default());
        assert_eq!(rows.rejects.iter().map(|r| r.line).collect::<Vec<_>>(), [2]);
        assert_eq!(rows.len(), 2);
        let again = batch(&[status(NOW - 1), status(NOW - 2)]);
        rows.route_into(&again, &key, &window, &Erased::default());
        assert!(rows.rejects.is_empty(), "the last batch's rejects are gone");
        let statuses = rows.table(Table::MessageStatus);
        assert_eq!(
            statuses.rows().iter().map(|r| r.line).collect::<Vec<_>>(),
            [0, 1]
        );
        assert_eq!(
            statuses.bytes(&statuses.rows()[1]),
            encoded(&status(NOW - 2))
        );
    }

    #[test]
    fn events_of_people_erased_after_them_are_dropped() {
        let pepper = Pepper::new(b"pepper-pepper-pepper");
        let erased = Erased::with(&[(pepper.hash_phone("919876544321"), NOW - 5)]);
        let rows = route(&batch(&[status(NOW - 10), status(NOW)]), &erased);
        assert_eq!(rows.erased, [0]);
        let statuses = rows.table(Table::MessageStatus);
        assert_eq!(
            statuses.rows().iter().map(|r| r.line).collect::<Vec<_>>(),
            [1]
        );
    }
}
