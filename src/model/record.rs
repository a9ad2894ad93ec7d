//! Framing of the events topic: a record holds one or more events of one webhook, one JSON
//! object per line (JSON Lines, schema of each line: `schemas/event.v1.schema.json`).
//!
//! Why not one record per event: librdkafka's cost is per record (a copy, a queue slot, a
//! delivery report, a wake-up of the waiting request) and dominated ingest's CPU on batched
//! webhooks; the sink's receive loop pays per record too. A webhook's events also become
//! atomic in Kafka: all of a record is acked, or none of it.
//!
//! Invariant: an encoded event never contains a raw `\n` (the encoder escapes every control
//! character), so splitting on `\n` recovers exactly the events written. A record of one
//! event is the same bytes as before framing existed, so older records read unchanged.

use super::Event;
use std::ops::Range;

/// A record is closed once it reaches this size: large enough that a 100-status webhook is
/// one record, small enough that a 1000-status webhook spreads over several partitions.
pub const TARGET_BYTES: usize = 64 * 1024;

const SEPARATOR: u8 = b'\n';

/// Builds records from a stream of events, reusing its buffers.
#[derive(Debug, Default)]
pub struct RecordWriter {
    bytes: Vec<u8>,
    events: usize,
}

impl RecordWriter {
    pub fn with_capacity(bytes: usize) -> Self {
        RecordWriter {
            bytes: Vec::with_capacity(bytes),
            ..RecordWriter::default()
        }
    }

    /// Sized for the events of a `body_len`-byte webhook, so that writing them does not grow
    /// the buffer: a status encodes to about twice its bytes in Meta's body, and a record
    /// closes after the event that crosses [`TARGET_BYTES`].
    pub fn for_body(body_len: usize) -> Self {
        RecordWriter::with_capacity((3 * body_len).min(TARGET_BYTES + 4096))
    }

    /// Appends `event`; returns true when the record is full and should be sent (then
    /// [`clear`](Self::clear)ed).
    pub fn push(&mut self, event: &Event<'_>) -> bool {
        if self.events > 0 {
            self.bytes.push(SEPARATOR);
        }
        event.encode(&mut self.bytes);
        self.events += 1;
        self.bytes.len() >= TARGET_BYTES
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn events(&self) -> usize {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.events = 0;
    }
}

/// Byte ranges of the events in `record`, in order; empty lines are skipped.
pub fn lines(record: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut start = 0;
    let ends = memchr::memchr_iter(SEPARATOR, record).chain(std::iter::once(record.len()));
    ends.filter_map(move |end| {
        let line = start..end;
        start = end + 1;
        (!line.is_empty()).then_some(line)
    })
}

/// How many events `record` holds (its non-empty lines).
pub fn count(record: &[u8]) -> usize {
    lines(record).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EventId;

    fn event(message_id: &str, title: &str) -> Event<'static> {
        Event {
            v: 1,
            id: EventId(u128::from(title.len() as u32)),
            waba_id: "waba".into(),
            status: (!message_id.is_empty()).then(|| message_id.to_string().into()),
            error_title: Some(title.to_string().into()),
            ..Event::default()
        }
    }

    fn decode(record: &[u8]) -> Vec<Event<'_>> {
        lines(record)
            .map(|r| serde_json::from_slice(&record[r]).expect("each line is an event"))
            .collect()
    }

    #[test]
    fn events_come_back_in_order_even_with_newlines_in_their_text() {
        let events = [
            event("wamid.1", "line\nbreak"),
            event("", "carriage\r\nreturn"),
            event("wamid.3", "plain"),
        ];
        let mut w = RecordWriter::default();
        for e in &events {
            assert!(!w.push(e), "three small events fit in one record");
        }
        assert_eq!(w.events(), 3);
        assert_eq!(count(w.bytes()), 3);
        assert_eq!(decode(w.bytes()), events);
    }

    #[test]
    fn a_record_of_one_event_is_that_event_alone() {
        let e = event("", "x");
        let mut w = RecordWriter::default();
        w.push(&e);
        let mut alone = Vec::new();
        e.encode(&mut alone);
        assert_eq!(w.bytes(), &alone[..]);
    }

    #[test]
    fn full_at_the_target_size_and_reusable_after_clear() {
        let big = "y".repeat(1000);
        let mut w = RecordWriter::default();
        let mut pushed = 0;
        while !w.push(&event("wamid.big", &big)) {
            pushed += 1;
        }
        assert!(w.bytes().len() >= TARGET_BYTES);
        assert!(w.bytes().len() < TARGET_BYTES + 2000);
        assert_eq!(count(w.bytes()), pushed + 1);
        w.clear();
        assert!(w.is_empty() && w.bytes().is_empty());
        w.push(&event("wamid.next", "z"));
        assert_eq!(count(w.bytes()), 1);
    }

    #[test]
    fn empty_lines_are_not_events() {
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"\n\n").count(), 0);
        assert_eq!(lines(b"a\n\nb\n").collect::<Vec<_>>(), vec![0..1, 3..4]);
    }
}
