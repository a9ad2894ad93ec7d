//! Framing of the events topic: a record holds one or more events of one webhook, in one of
//! two formats ([`Format`], `kafka.record_format`):
//! - JSON Lines: one JSON object per line (schema `schemas/event.v2.schema.json`);
//! - protobuf: a `0x00` byte, then each event as a varint length and a message
//!   (`schemas/event.v2.proto`).
//!
//! Why not one record per event: librdkafka's cost is per record (a copy, a queue slot, a
//! delivery report, a wake-up of the waiting request) and dominated ingest's CPU on batched
//! webhooks; the sink's receive loop pays per record too. A webhook's events also become
//! atomic in Kafka: all of a record is acked, or none of it.
//!
//! Invariants: a record's first byte tells its format (JSON text never starts with `0x00`),
//! so readers take either whatever the writer's setting; an encoded JSON event never contains
//! a raw `\n` (the encoder escapes every control character), so splitting on `\n` recovers
//! exactly the events written. A JSON record of one event is the same bytes as before framing
//! existed, so older records read unchanged.

use super::{proto, Event};
pub use crate::config::RecordFormat as Format;
use std::ops::Range;

/// A record is closed once it reaches this size: large enough that a 100-status webhook is
/// one record, small enough that a 1000-status webhook spreads over several partitions.
pub const TARGET_BYTES: usize = 64 * 1024;

const SEPARATOR: u8 = b'\n';

/// The first byte of a protobuf record.
const PROTOBUF_MARKER: u8 = 0x00;

/// Room left for an event's length before it is encoded: 5 varint bytes hold any `u32`.
const LENGTH_ROOM: usize = 5;

/// Builds records from a stream of events, reusing its buffers.
#[derive(Debug)]
pub struct RecordWriter {
    format: Format,
    bytes: Vec<u8>,
    events: usize,
}

impl RecordWriter {
    pub fn with_capacity(format: Format, bytes: usize) -> Self {
        RecordWriter {
            format,
            bytes: Vec::with_capacity(bytes),
            events: 0,
        }
    }

    /// Sized for the events of a `body_len`-byte webhook, so that writing them does not grow
    /// the buffer: a status encodes to about twice its bytes in Meta's body as JSON (less as
    /// protobuf), and a record closes after the event that crosses [`TARGET_BYTES`].
    pub fn for_body(format: Format, body_len: usize) -> Self {
        RecordWriter::with_capacity(format, (3 * body_len).min(TARGET_BYTES + 4096))
    }

    /// Appends `event`; returns true when the record is full and should be sent (then
    /// [`clear`](Self::clear)ed).
    pub fn push(&mut self, event: &Event<'_>) -> bool {
        match self.format {
            Format::Json => {
                if self.events > 0 {
                    self.bytes.push(SEPARATOR);
                }
                event.encode(&mut self.bytes);
            }
            Format::Protobuf => {
                if self.events == 0 {
                    self.bytes.push(PROTOBUF_MARKER);
                }
                self.push_delimited(event);
            }
        }
        self.events += 1;
        self.bytes.len() >= TARGET_BYTES
    }

    /// Encodes after room for the length, then moves the message back against the length
    /// once it is known: one short `memmove` instead of encoding twice to measure.
    fn push_delimited(&mut self, event: &Event<'_>) {
        let at = self.bytes.len();
        self.bytes.resize(at + LENGTH_ROOM, 0);
        proto::encode(event, &mut self.bytes);
        let len = self.bytes.len() - at - LENGTH_ROOM;
        let (prefix, n) = proto::varint_array(len as u64);
        self.bytes[at..at + n].copy_from_slice(&prefix[..n]);
        self.bytes.copy_within(at + LENGTH_ROOM.., at + n);
        self.bytes.truncate(at + n + len);
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

/// The format of `record`, from its first byte.
pub fn format_of(record: &[u8]) -> Format {
    match record.first() {
        Some(&PROTOBUF_MARKER) => Format::Protobuf,
        _ => Format::Json,
    }
}

/// Byte ranges of the events in `record`, in order, whatever its format; empty lines and
/// empty messages are skipped. A protobuf record whose length prefix is malformed or runs
/// past its end yields the rest as one range, which then fails to decode (and is
/// dead-lettered) rather than vanishing.
pub fn lines(record: &[u8]) -> Lines<'_> {
    let format = format_of(record);
    Lines {
        record,
        format,
        at: usize::from(format == Format::Protobuf),
    }
}

pub struct Lines<'a> {
    record: &'a [u8],
    format: Format,
    at: usize,
}

impl Iterator for Lines<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        while self.at < self.record.len() {
            let line = match self.format {
                Format::Json => self.next_line(),
                Format::Protobuf => self.next_message(),
            };
            if !line.is_empty() {
                return Some(line);
            }
        }
        None
    }
}

impl Lines<'_> {
    fn next_line(&mut self) -> Range<usize> {
        let rest = &self.record[self.at..];
        let end = memchr::memchr(SEPARATOR, rest).map_or(self.record.len(), |i| self.at + i);
        let line = self.at..end;
        self.at = end + 1;
        line
    }

    fn next_message(&mut self) -> Range<usize> {
        let mut r = proto::Reader(&self.record[self.at..]);
        let line = match r.varint().map(usize::try_from) {
            Ok(Ok(len)) if len <= r.0.len() => {
                let from = self.record.len() - r.0.len();
                from..from + len
            }
            _ => self.at..self.record.len(),
        };
        self.at = line.end;
        line
    }
}

/// How many events `record` holds.
pub fn count(record: &[u8]) -> usize {
    lines(record).count()
}

/// Decodes one event (a range from [`lines`] of a record of `format`), borrowing its strings.
/// JSON is checked for UTF-8 once, as a whole, and parsed from `&str`: serde_json then skips
/// its per-string check, which on ~30 short strings per event cost more (~7 % of the sink's
/// CPU in a profile) than one pass over the line.
pub fn decode(format: Format, line: &[u8]) -> Result<Event<'_>, String> {
    let mut e = Event::default();
    decode_into(format, line, &mut e)?;
    Ok(e)
}

/// [`decode`] into a slot the caller reuses (see [`proto::decode_into`]); on an error `e`
/// holds no meaningful event.
pub fn decode_into<'a>(format: Format, line: &'a [u8], e: &mut Event<'a>) -> Result<(), String> {
    match format {
        Format::Json => {
            let text = std::str::from_utf8(line).map_err(|e| e.to_string())?;
            *e = serde_json::from_str(text).map_err(|e| e.to_string())?;
            Ok(())
        }
        Format::Protobuf => proto::decode_into(line, e).map_err(|e| e.to_string()),
    }
}

/// One event as JSON, whatever its format: a protobuf event as its JSON form would be, a JSON
/// line as whatever JSON it holds (for readers that check values, not types: the audit).
pub fn to_json(format: Format, line: &[u8]) -> Option<serde_json::Value> {
    match format {
        Format::Json => serde_json::from_slice(line).ok(),
        Format::Protobuf => serde_json::to_value(proto::decode(line).ok()?).ok(),
    }
}

/// One event's bytes (a range from [`lines`]) as a record of its own, in the same format:
/// what the dead-letter topic keeps and `bluetick replay` sends back.
pub fn alone(format: Format, line: &[u8]) -> Vec<u8> {
    match format {
        Format::Json => line.to_vec(),
        Format::Protobuf => {
            let mut out = Vec::with_capacity(line.len() + 1 + LENGTH_ROOM);
            out.push(PROTOBUF_MARKER);
            proto::put_varint(&mut out, line.len() as u64);
            out.extend_from_slice(line);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EventId;

    const FORMATS: [Format; 2] = [Format::Json, Format::Protobuf];

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

    fn decode_all(record: &[u8]) -> Vec<Event<'_>> {
        let format = format_of(record);
        lines(record)
            .map(|r| decode(format, &record[r]).expect("each line is an event"))
            .collect()
    }

    #[test]
    fn events_come_back_in_order_even_with_newlines_in_their_text() {
        let events = [
            event("wamid.1", "line\nbreak"),
            event("", "carriage\r\nreturn"),
            event("wamid.3", "plain"),
        ];
        for format in FORMATS {
            let mut w = RecordWriter::with_capacity(format, 0);
            for e in &events {
                assert!(!w.push(e), "three small events fit in one record");
            }
            assert_eq!(format_of(w.bytes()), format);
            assert_eq!(w.events(), 3);
            assert_eq!(count(w.bytes()), 3);
            assert_eq!(decode_all(w.bytes()), events);
            let json: Vec<_> = lines(w.bytes())
                .map(|r| to_json(format, &w.bytes()[r]).expect("JSON"))
                .collect();
            let want: Vec<_> = events
                .iter()
                .map(|e| serde_json::to_value(e).expect("e"))
                .collect();
            assert_eq!(json, want, "{format:?}");
        }
    }

    #[test]
    fn a_json_record_of_one_event_is_that_event_alone() {
        let e = event("", "x");
        let mut w = RecordWriter::with_capacity(Format::Json, 0);
        w.push(&e);
        let mut alone = Vec::new();
        e.encode(&mut alone);
        assert_eq!(w.bytes(), &alone[..]);
    }

    /// A dead-lettered event is a record of its own that reads back as that event.
    #[test]
    fn one_event_alone_is_a_record_in_its_format() {
        let events = [event("wamid.1", "a"), event("wamid.2", &"long ".repeat(40))];
        for format in FORMATS {
            let mut w = RecordWriter::with_capacity(format, 0);
            for e in &events {
                w.push(e);
            }
            let record = w.bytes();
            for (range, e) in lines(record).zip(&events) {
                let single = alone(format, &record[range]);
                assert_eq!(decode_all(&single), std::slice::from_ref(e), "{format:?}");
            }
        }
    }

    #[test]
    fn full_at_the_target_size_and_reusable_after_clear() {
        let big = "y".repeat(1000);
        for format in FORMATS {
            let mut w = RecordWriter::for_body(format, 100);
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
            assert_eq!(format_of(w.bytes()), format);
        }
    }

    #[test]
    fn empty_lines_are_not_events() {
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"\n\n").count(), 0);
        assert_eq!(lines(b"a\n\nb\n").collect::<Vec<_>>(), vec![0..1, 3..4]);
        assert_eq!(lines(&[0x00]).count(), 0);
        assert_eq!(
            lines(&[0x00, 0x00, 0x01, 0x08]).collect::<Vec<_>>(),
            vec![3..4]
        );
    }

    /// Nothing is dropped unseen: a broken length hands the rest over to fail decoding.
    #[test]
    fn a_broken_length_prefix_yields_the_rest_as_one_bad_event() {
        let mut w = RecordWriter::with_capacity(Format::Protobuf, 0);
        w.push(&event("wamid.1", "a"));
        let mut record = w.bytes().to_vec();
        record.extend_from_slice(&[0x7f, 0x08, 0x02]);
        let ranges: Vec<_> = lines(&record).collect();
        assert_eq!(ranges.len(), 2);
        assert!(decode(Format::Protobuf, &record[ranges[0].clone()]).is_ok());
        assert_eq!(ranges[1], record.len() - 3..record.len());
        assert!(decode(Format::Protobuf, &record[ranges[1].clone()]).is_err());
    }
}
