//! The binary encoding of an [`Event`]: protobuf's wire format, schema
//! `schemas/event.v2.proto`, so that any protobuf library reads the events topic.
//!
//! Why: the sink spent about a third of its CPU per row parsing JSON, and an event's ids and
//! hashes are twice their size as hex. Protobuf rather than a format of our own because
//! consumers other than bluetick then need only the `.proto`; written by hand rather than
//! generated because the decoder fills the sink's own borrowed [`Event`] in place (strings
//! stay slices of the record), which generated code, with its own owned structs, does not.
//!
//! Invariants: one table ([`event_fields!`]) gives every field its tag, so encoder, decoder
//! and the test that compares them with the `.proto` cannot disagree; decoding validates what
//! JSON decoding validates (UTF-8, a masked number's shape, hash and id lengths, a known
//! kind), and a field the schema does not have is an error, as an unknown JSON key is.

use super::{Event, EventId, EventKind};
use crate::privacy::{MaskedPhone, PersonHash, Pseudonym};
use std::borrow::Cow;

const VARINT: u8 = 0;
const LEN: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("message ends inside a field")]
    Truncated,
    #[error("varint longer than 10 bytes")]
    Varint,
    #[error("field {tag} has wire type {wire}")]
    WireType { tag: u64, wire: u8 },
    #[error("field {0} is not in the schema")]
    Unknown(u64),
    #[error("field {tag}: {what}")]
    Invalid { tag: u64, what: &'static str },
}

/// Appends `e` as one protobuf message (without a length prefix).
pub fn encode(e: &Event<'_>, out: &mut Vec<u8>) {
    put_fields(e, out);
}

/// Reads one message, borrowing its strings.
pub fn decode(msg: &[u8]) -> Result<Event<'_>, ProtoError> {
    let mut e = Event::default();
    decode_into(msg, &mut e)?;
    Ok(e)
}

/// Reads one message into `e`, whatever it held before: the sink decodes every line into one
/// slot, since an [`Event`] is over a kilobyte and moving it through `Result`s cost ~10 % of
/// the sink's CPU in a profile. On an error `e` holds part of the message.
pub fn decode_into<'a>(msg: &'a [u8], e: &mut Event<'a>) -> Result<(), ProtoError> {
    *e = Event::default();
    let mut r = Reader(msg);
    while !r.0.is_empty() {
        let (tag, wire) = r.key()?;
        get_field(e, tag, wire, &mut r)?;
    }
    Ok(())
}

/// The kind of a message, read without decoding the rest: a message that failed to decode
/// (and was dead-lettered for it) may still say which table it was for.
pub fn kind_of(msg: &[u8]) -> Option<EventKind> {
    let mut r = Reader(msg);
    while !r.0.is_empty() {
        let (tag, wire) = r.key().ok()?;
        if tag == KIND_TAG {
            let mut kind = EventKind::default();
            kind.get(tag, wire, &mut r).ok()?;
            return Some(kind);
        }
        r.skip(tag, wire).ok()?;
    }
    None
}

/// Inlined everywhere: with a constant tag, writing a field's key folds to one or two pushes
/// (a profile of the out-of-line version spent 40 % of encoding in this function).
#[inline(always)]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `v` as a varint on the stack: its bytes, and how many of them.
pub fn varint_array(mut v: u64) -> ([u8; 10], usize) {
    let mut bytes = [0u8; 10];
    let mut n = 0;
    while v >= 0x80 {
        bytes[n] = v as u8 | 0x80;
        v >>= 7;
        n += 1;
    }
    bytes[n] = v as u8;
    (bytes, n + 1)
}

/// A message's unread bytes.
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    /// Most varints here (every key, every string's length) are one byte: that case is
    /// tested first (callgrind: ~9 % of the decoder's instructions saved).
    #[inline]
    pub fn varint(&mut self) -> Result<u64, ProtoError> {
        if let Some((&b, rest)) = self.0.split_first() {
            if b < 0x80 {
                self.0 = rest;
                return Ok(u64::from(b));
            }
        }
        let mut v = 0u64;
        for (i, b) in self.0.iter().take(10).enumerate() {
            v |= u64::from(b & 0x7f) << (7 * i);
            if *b < 0x80 {
                self.0 = &self.0[i + 1..];
                return Ok(v);
            }
        }
        Err(if self.0.len() < 10 {
            ProtoError::Truncated
        } else {
            ProtoError::Varint
        })
    }

    fn key(&mut self) -> Result<(u64, u8), ProtoError> {
        let key = self.varint()?;
        Ok((key >> 3, (key & 7) as u8))
    }

    fn want(tag: u64, wire: u8, expected: u8) -> Result<(), ProtoError> {
        match wire == expected {
            true => Ok(()),
            false => Err(ProtoError::WireType { tag, wire }),
        }
    }

    fn number(&mut self, tag: u64, wire: u8) -> Result<u64, ProtoError> {
        Self::want(tag, wire, VARINT)?;
        self.varint()
    }

    pub fn bytes(&mut self, tag: u64, wire: u8) -> Result<&'a [u8], ProtoError> {
        Self::want(tag, wire, LEN)?;
        let len = usize::try_from(self.varint()?).map_err(|_| ProtoError::Truncated)?;
        if len > self.0.len() {
            return Err(ProtoError::Truncated);
        }
        let (value, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(value)
    }

    fn str(&mut self, tag: u64, wire: u8) -> Result<&'a str, ProtoError> {
        utf8(self.bytes(tag, wire)?).ok_or(ProtoError::Invalid {
            tag,
            what: "not UTF-8",
        })
    }

    fn array<const N: usize>(&mut self, tag: u64, wire: u8) -> Result<[u8; N], ProtoError> {
        self.bytes(tag, wire)?
            .try_into()
            .map_err(|_| ProtoError::Invalid {
                tag,
                what: "wrong length",
            })
    }

    fn skip(&mut self, tag: u64, wire: u8) -> Result<(), ProtoError> {
        match wire {
            VARINT => self.varint().map(drop),
            _ => self.bytes(tag, wire).map(drop),
        }
    }
}

/// `bytes` as text if they are UTF-8. Nearly every string of an event is short and ASCII
/// (ids, statuses, codes), where std's validator spends ~10 instructions a byte; checking for
/// ASCII first costs about one, and only other text takes the full check.
fn utf8(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: every ASCII byte sequence is valid UTF-8, checked on the line above.
        return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).ok()
}

#[inline(always)]
fn put_key(out: &mut Vec<u8>, tag: u32, wire: u8) {
    put_varint(out, u64::from(tag) << 3 | u64::from(wire));
}

#[inline(always)]
fn put_bytes(out: &mut Vec<u8>, tag: u32, b: &[u8]) {
    out.reserve(b.len() + 8);
    put_key(out, tag, LEN);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

#[inline(always)]
fn put_number(out: &mut Vec<u8>, tag: u32, v: u64) {
    put_key(out, tag, VARINT);
    put_varint(out, v);
}

/// How one Rust field type is written and read, and how the `.proto` declares it.
trait Field<'a> {
    /// The declaration in `schemas/event.v2.proto`, without name and tag (read by the test
    /// that compares the two).
    #[cfg_attr(not(test), allow(dead_code))]
    const PROTO: &'static str;
    fn put(&self, tag: u32, out: &mut Vec<u8>);
    fn get(&mut self, tag: u64, wire: u8, r: &mut Reader<'a>) -> Result<(), ProtoError>;
}

impl<'a> Field<'a> for u16 {
    const PROTO: &'static str = "uint32";
    #[inline(always)]
    fn put(&self, tag: u32, out: &mut Vec<u8>) {
        put_number(out, tag, u64::from(*self));
    }
    fn get(&mut self, tag: u64, wire: u8, r: &mut Reader<'a>) -> Result<(), ProtoError> {
        *self = u16::try_from(r.number(tag, wire)?).map_err(|_| ProtoError::Invalid {
            tag,
            what: "out of range",
        })?;
        Ok(())
    }
}

impl<'a> Field<'a> for u64 {
    const PROTO: &'static str = "uint64";
    #[inline(always)]
    fn put(&self, tag: u32, out: &mut Vec<u8>) {
        put_number(out, tag, *self);
    }
    fn get(&mut self, tag: u64, wire: u8, r: &mut Reader<'a>) -> Result<(), ProtoError> {
        *self = r.number(tag, wire)?;
        Ok(())
    }
}

impl<'a> Field<'a> for EventId {
    const PROTO: &'static str = "bytes";
    #[inline(always)]
    fn put(&self, tag: u32, out: &mut Vec<u8>) {
        put_bytes(out, tag, &self.0.to_be_bytes());
    }
    fn get(&mut self, tag: u64, wire: u8, r: &mut Reader<'a>) -> Result<(), ProtoError> {
        *self = EventId(u128::from_be_bytes(r.array(tag, wire)?));
        Ok(())
    }
}

const KIND_TAG: u64 = 3;

impl<'a> Field<'a> for EventKind {
    const PROTO: &'static str = "Kind";
    /// The enum's values are the kinds in declaration order from 1; 0 is unset.
    #[inline(always)]
    fn put(&self, tag: u32, out: &mut Vec<u8>) {
        put_number(out, tag, self.index() as u64 + 1);
    }
    fn get(&mut self, tag: u64, wire: u8, r: &mut Reader<'a>) -> Result<(), ProtoError> {
        let value = r.number(tag, wire)?;
        *self = usize::try_from(value)
            .ok()
            .and_then(|v| EventKind::ALL.get(v.checked_sub(1)?))
            .copied()
            .ok_or(ProtoError::Invalid {
                tag,
                what: "unknown kind",
            })?;
        Ok(())
    }
}

impl<'a> Field<'a> for Cow<'a, str> {
    const PROTO: &'static str = "string";
    #[inline(always)]
    fn put(&self, tag: u32, out: &mut Vec<u8>) {
        put_bytes(out, tag, self.as_bytes());
    }
    fn get(&mut self, tag: u64, wire: u8, r: &mut Reader<'a>) -> Result<(), ProtoError> {
        *self = Cow::Borrowed(r.str(tag, wire)?);
        Ok(())
    }
}

/// `optional` fields: written only when present, as proto3's explicit presence has it.
macro_rules! optional {
    ($t:ty, $proto:literal, |$v:ident, $tag:ident, $out:ident| $put:expr, |$r:ident, $w:ident| $get:expr) => {
        impl<'a> Field<'a> for Option<$t> {
            const PROTO: &'static str = concat!("optional ", $proto);
            #[inline(always)]
            fn put(&self, $tag: u32, $out: &mut Vec<u8>) {
                if let Some($v) = self {
                    $put
                }
            }
            fn get(&mut self, $tag: u64, $w: u8, $r: &mut Reader<'a>) -> Result<(), ProtoError> {
                *self = Some($get);
                Ok(())
            }
        }
    };
}

optional!(
    Cow<'a, str>,
    "string",
    |v, tag, out| put_bytes(out, tag, v.as_bytes()),
    |r, wire| Cow::Borrowed(r.str(tag, wire)?)
);
optional!(
    u64,
    "uint64",
    |v, tag, out| put_number(out, tag, *v),
    |r, wire| r.number(tag, wire)?
);
optional!(
    u32,
    "uint32",
    |v, tag, out| put_number(out, tag, u64::from(*v)),
    |r, wire| u32::try_from(r.number(tag, wire)?).map_err(|_| ProtoError::Invalid {
        tag,
        what: "out of range"
    })?
);
optional!(
    i64,
    "int64",
    |v, tag, out| put_number(out, tag, *v as u64),
    |r, wire| r.number(tag, wire)? as i64
);
optional!(
    bool,
    "bool",
    |v, tag, out| put_number(out, tag, u64::from(*v)),
    |r, wire| r.number(tag, wire)? != 0
);
optional!(
    Pseudonym,
    "bytes",
    |v, tag, out| put_bytes(out, tag, &v.0),
    |r, wire| Pseudonym(r.array(tag, wire)?)
);
optional!(
    PersonHash,
    "bytes",
    |v, tag, out| put_bytes(out, tag, &v.0),
    |r, wire| PersonHash(r.array(tag, wire)?)
);
optional!(
    MaskedPhone,
    "string",
    |v, tag, out| put_bytes(out, tag, v.as_bytes()),
    |r, wire| MaskedPhone::parse_bytes(r.bytes(tag, wire)?).ok_or(ProtoError::Invalid {
        tag,
        what: "not a masked phone number"
    })?
);

/// Every field of the schema with its tag, in the `.proto`'s order. Tags 1–15 take one byte
/// on the wire: they go to the fields every status has. Version 1's raw ids are not here:
/// only JSON records of earlier releases carry them.
macro_rules! event_fields {
    ($($tag:literal $name:ident)*) => {
        fn put_fields(e: &Event<'_>, out: &mut Vec<u8>) {
            $( e.$name.put($tag, out); )*
        }

        fn get_field<'a>(
            e: &mut Event<'a>,
            tag: u64,
            wire: u8,
            r: &mut Reader<'a>,
        ) -> Result<(), ProtoError> {
            match tag {
                $( $tag => e.$name.get(tag, wire, r), )*
                _ => Err(ProtoError::Unknown(tag)),
            }
        }

        /// (tag, name, declaration) of every field, for the test against the `.proto`.
        #[cfg(test)]
        fn declared() -> Vec<(u64, &'static str, &'static str)> {
            fn proto_of<'a, T: Field<'a>>(_: &T) -> &'static str {
                T::PROTO
            }
            let e = Event::default();
            vec![ $( ($tag, stringify!($name), proto_of(&e.$name)), )* ]
        }
    };
}

event_fields! {
    1 v
    2 id
    3 kind
    4 received_ms
    5 ts
    6 waba_id
    7 field
    8 phone_number_id
    9 display_phone_number
    10 message_key
    11 status
    12 message_type
    13 recipient_type
    14 person_masked
    15 person_hash
    16 user_hash
    17 parent_user_hash
    18 context_message_key
    19 forwarded
    20 from_ad
    21 conversation_id
    22 conversation_origin
    23 conversation_expiration_ts
    24 pricing_model
    25 pricing_category
    26 pricing_type
    27 billable
    28 error_code
    29 error_title
    30 template_id
    31 template_name
    32 template_language
    33 update_event
    34 reason
    35 previous_quality
    36 new_quality
    37 current_limit
    38 tenant
    39 country_code
    40 message_subtype
    41 target_message_key
    42 group_key
    43 ad_source_type
    44 ad_source_id
    45 ad_click_key
    46 item_count
    47 direction
    48 call_start_ts
    49 call_end_ts
    50 call_duration_s
    51 preference_category
    52 preference
    53 template_category
    54 pause_title
    55 previous_category
    56 new_category
    57 correct_category
    58 alert_type
    59 alert_severity
    60 alert_status
    61 decision
    62 violation_type
    63 ban_state
    64 max_daily_conversations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::encode::tests::full_event;
    use crate::model::EVENT_VERSION;

    fn bytes(e: &Event<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode(e, &mut out);
        out
    }

    #[test]
    fn every_field_round_trips_and_strings_stay_borrowed() {
        for text in ["plain", "", "quote \" \n controls \u{0} é ✓ 𝄞"] {
            let e = full_event(text);
            let wire = bytes(&e);
            let back = decode(&wire).expect("decode");
            assert_eq!(back, e, "{text:?}");
            assert!(matches!(back.reason, Some(Cow::Borrowed(_))));
            assert_eq!(kind_of(&wire), Some(e.kind));
        }
        let sparse = Event {
            v: EVENT_VERSION,
            ..Event::default()
        };
        assert_eq!(decode(&bytes(&sparse)), Ok(sparse));
    }

    #[test]
    fn smaller_than_the_json_of_the_same_event() {
        let e = full_event("read");
        let mut json = Vec::new();
        e.encode(&mut json);
        assert!(bytes(&e).len() * 3 < json.len() * 2, "{}", bytes(&e).len());
    }

    /// The same checks as JSON decoding: nothing that JSON would refuse gets in this way.
    #[test]
    fn refuses_what_the_json_decoder_refuses() {
        let unmasked = {
            let mut out = Vec::new();
            put_bytes(&mut out, 14, b"919876543210");
            out
        };
        let cases: [(&[u8], ProtoError); 7] = [
            (
                &unmasked,
                ProtoError::Invalid {
                    tag: 14,
                    what: "not a masked phone number",
                },
            ),
            (
                &[0x32, 0x02, 0xff, 0xfe],
                ProtoError::Invalid {
                    tag: 6,
                    what: "not UTF-8",
                },
            ),
            (
                &[0x12, 0x02, 0x01, 0x02],
                ProtoError::Invalid {
                    tag: 2,
                    what: "wrong length",
                },
            ),
            (
                &[0x18, 0x63],
                ProtoError::Invalid {
                    tag: 3,
                    what: "unknown kind",
                },
            ),
            (&[0xa8, 0x06, 0x01], ProtoError::Unknown(101)),
            (&[0x32, 0x05, b'a'], ProtoError::Truncated),
            (&[0x30, 0x01], ProtoError::WireType { tag: 6, wire: 0 }),
        ];
        for (wire, error) in cases {
            assert_eq!(decode(wire), Err(error), "{wire:?}");
        }
        let mut long = vec![0x08];
        long.extend([0xff; 11]);
        assert_eq!(decode(&long).map(|_| ()), Err(ProtoError::Varint));
    }

    #[test]
    fn varints_round_trip_at_every_width() {
        for v in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut r = Reader(&out);
            assert_eq!(r.varint(), Ok(v));
            assert!(r.0.is_empty());
        }
    }

    /// The `.proto` that other consumers compile is the schema this code writes: same fields,
    /// same tags, same types, and the enum's values in [`EventKind::ALL`]'s order.
    #[test]
    fn the_schema_file_declares_exactly_these_fields() {
        let proto = include_str!("../../schemas/event.v2.proto");
        let body = |name: &str| {
            let start = proto.find(&format!("{name} {{")).expect(name);
            let rest = &proto[start..];
            rest[..rest.find('}').expect("closing brace")].to_string()
        };
        let fields: Vec<(u64, String, String)> = body("message Event")
            .lines()
            .filter_map(|l| {
                let l = l.trim().strip_suffix(';')?;
                let (decl, tag) = l.split_once(" = ")?;
                let (ty, name) = decl.rsplit_once(' ')?;
                Some((tag.parse().ok()?, name.to_string(), ty.to_string()))
            })
            .collect();
        let want: Vec<(u64, String, String)> = declared()
            .into_iter()
            .map(|(t, n, d)| (t, n.to_string(), d.to_string()))
            .collect();
        assert_eq!(fields, want);
        let kinds: Vec<(String, usize)> = body("enum Kind")
            .lines()
            .filter_map(|l| {
                let (name, value) = l.trim().strip_suffix(';')?.split_once(" = ")?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect();
        let mut want = vec![("KIND_UNSPECIFIED".to_string(), 0)];
        want.extend(
            EventKind::ALL
                .iter()
                .map(|k| (k.as_str().to_uppercase(), k.index() + 1)),
        );
        assert_eq!(kinds, want);
    }

    proptest::proptest! {
        /// Whatever the bytes, decoding returns an error or an event; it never panics.
        #[test]
        fn arbitrary_bytes_never_panic(wire in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = decode(&wire);
            let _ = kind_of(&wire);
        }
    }
}
