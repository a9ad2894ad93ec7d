//! The Kafka record of an [`Event`], written by hand: the encoder was the largest single cost
//! of ingest's hot path with serde_json (its per-byte escaping and writer layers), and an
//! event is a flat object of known keys, so the JSON is a sequence of appends.
//!
//! Invariant: the output is exactly what `serde_json::to_writer(event)` produces — same keys,
//! same order, absent fields omitted — which `Deserialize` (the sink) reads back unchanged.
//! Tests and the fuzz suite compare the two.

use super::Event;
use std::borrow::Cow;

/// `,"name":` — a key of ours (ASCII, nothing to escape) with its separator, as one constant,
/// so that writing a field is one append of it and one of the value.
macro_rules! key {
    ($name:literal) => {
        concat!(",\"", $name, "\":").as_bytes()
    };
}

/// Appends `event` as one JSON object to `out`.
pub fn encode(e: &Event<'_>, out: &mut Vec<u8>) {
    let mut w = Writer { out };
    // `v` is always first, so every later key starts with a comma.
    w.out.extend_from_slice(b"{\"v\":");
    w.out
        .extend_from_slice(itoa::Buffer::new().format(e.v).as_bytes());
    w.raw_str(key!("id"), &e.id.hex());
    w.raw_str(key!("kind"), e.kind.as_str().as_bytes());
    w.num(key!("received_ms"), e.received_ms);
    w.num(key!("ts"), e.ts);
    w.text(key!("waba_id"), &e.waba_id);
    w.text(key!("field"), &e.field);
    w.opt(key!("phone_number_id"), &e.phone_number_id);
    w.opt(key!("display_phone_number"), &e.display_phone_number);
    if let Some(k) = &e.message_key {
        w.raw_str(key!("message_key"), &k.to_hex().0);
    }
    w.opt(key!("status"), &e.status);
    w.opt(key!("message_type"), &e.message_type);
    w.opt(key!("recipient_type"), &e.recipient_type);
    if let Some(m) = &e.person_masked {
        w.raw_str(key!("person_masked"), m.as_bytes());
    }
    for (key, hash) in [
        (key!("person_hash"), &e.person_hash),
        (key!("user_hash"), &e.user_hash),
        (key!("parent_user_hash"), &e.parent_user_hash),
    ] {
        if let Some(h) = hash {
            w.raw_str(key, &h.to_hex().0);
        }
    }
    if let Some(k) = &e.context_message_key {
        w.raw_str(key!("context_message_key"), &k.to_hex().0);
    }
    w.opt_bool(key!("forwarded"), e.forwarded);
    w.opt_bool(key!("from_ad"), e.from_ad);
    w.opt(key!("conversation_id"), &e.conversation_id);
    w.opt(key!("conversation_origin"), &e.conversation_origin);
    w.opt_num(
        key!("conversation_expiration_ts"),
        e.conversation_expiration_ts,
    );
    w.opt(key!("pricing_model"), &e.pricing_model);
    w.opt(key!("pricing_category"), &e.pricing_category);
    w.opt(key!("pricing_type"), &e.pricing_type);
    w.opt_bool(key!("billable"), e.billable);
    w.opt_num(key!("error_code"), e.error_code);
    w.opt(key!("error_title"), &e.error_title);
    w.opt(key!("template_id"), &e.template_id);
    w.opt(key!("template_name"), &e.template_name);
    w.opt(key!("template_language"), &e.template_language);
    w.opt(key!("update_event"), &e.update_event);
    w.opt(key!("reason"), &e.reason);
    w.opt(key!("previous_quality"), &e.previous_quality);
    w.opt(key!("new_quality"), &e.new_quality);
    w.opt(key!("current_limit"), &e.current_limit);
    w.opt(key!("tenant"), &e.tenant);
    w.opt(key!("country_code"), &e.country_code);
    w.opt(key!("message_subtype"), &e.message_subtype);
    w.opt_key(key!("target_message_key"), &e.target_message_key);
    w.opt_key(key!("group_key"), &e.group_key);
    w.opt(key!("ad_source_type"), &e.ad_source_type);
    w.opt(key!("ad_source_id"), &e.ad_source_id);
    w.opt_key(key!("ad_click_key"), &e.ad_click_key);
    w.opt_num(key!("item_count"), e.item_count);
    w.opt(key!("direction"), &e.direction);
    w.opt_num(key!("call_start_ts"), e.call_start_ts);
    w.opt_num(key!("call_end_ts"), e.call_end_ts);
    w.opt_num(key!("call_duration_s"), e.call_duration_s);
    w.opt(key!("preference_category"), &e.preference_category);
    w.opt(key!("preference"), &e.preference);
    w.opt(key!("template_category"), &e.template_category);
    w.opt(key!("pause_title"), &e.pause_title);
    w.opt(key!("previous_category"), &e.previous_category);
    w.opt(key!("new_category"), &e.new_category);
    w.opt(key!("correct_category"), &e.correct_category);
    w.opt(key!("alert_type"), &e.alert_type);
    w.opt(key!("alert_severity"), &e.alert_severity);
    w.opt(key!("alert_status"), &e.alert_status);
    w.opt(key!("decision"), &e.decision);
    w.opt(key!("violation_type"), &e.violation_type);
    w.opt(key!("ban_state"), &e.ban_state);
    w.opt(key!("max_daily_conversations"), &e.max_daily_conversations);
    w.out.push(b'}');
}

/// Appends fields after the first; each `key` is a [`key!`] constant.
struct Writer<'o> {
    out: &'o mut Vec<u8>,
}

impl Writer<'_> {
    #[inline(always)]
    fn num(&mut self, key: &[u8], n: impl itoa::Integer) {
        self.out.extend_from_slice(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }

    #[inline(always)]
    fn opt_num(&mut self, key: &[u8], n: Option<impl itoa::Integer>) {
        if let Some(n) = n {
            self.num(key, n);
        }
    }

    /// A value we produced ourselves (hex, masked digits, a kind name): nothing to escape.
    #[inline(always)]
    fn raw_str(&mut self, key: &[u8], value: &[u8]) {
        self.out.extend_from_slice(key);
        self.out.push(b'"');
        self.out.extend_from_slice(value);
        self.out.push(b'"');
    }

    #[inline(always)]
    fn text(&mut self, key: &[u8], value: &str) {
        self.out.extend_from_slice(key);
        escaped(self.out, value);
    }

    #[inline(always)]
    fn opt(&mut self, key: &[u8], value: &Option<Cow<'_, str>>) {
        if let Some(v) = value {
            self.text(key, v);
        }
    }

    #[inline(always)]
    fn opt_key(&mut self, key: &[u8], value: &Option<crate::privacy::Pseudonym>) {
        if let Some(k) = value {
            self.raw_str(key, &k.to_hex().0);
        }
    }

    #[inline(always)]
    fn opt_bool(&mut self, key: &[u8], value: Option<bool>) {
        if let Some(b) = value {
            self.out.extend_from_slice(key);
            self.out
                .extend_from_slice(if b { b"true" } else { b"false" });
        }
    }
}

/// Appends `s` as a JSON string. Text from Meta is almost never in need of escaping, so the
/// common case is one word-at-a-time check over the bytes and one copy; only strings that
/// need escaping take the byte-by-byte path.
fn escaped(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    if !any_needs_escape(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    escaped_slowly(out, bytes);
}

#[cold]
fn escaped_slowly(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Eight bytes at a time, as bit tricks on a `u64` (exact as a yes/no answer): most strings
/// in an event are 4–60 bytes, too short for the compiler's vector loop to start.
#[inline]
fn any_needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word);
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0;
        if control
            | has_zero(x ^ (ONES * u64::from(b'"')))
            | has_zero(x ^ (ONES * u64::from(b'\\')))
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .fold(false, |any, &b| any | needs_escape(b))
}

#[inline]
fn needs_escape(b: u8) -> bool {
    // `|`, not `||`: no branches in the short tail loop that uses it.
    (b < 0x20) | (b == b'"') | (b == b'\\')
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{EventId, EventKind};
    use crate::privacy::{Pepper, Person};

    pub(crate) fn full_event<'a>(text: &'a str) -> Event<'a> {
        let person = Person::protect(&Pepper::new(b"pepper-0123456789"), "+91 98765 43210");
        Event {
            v: 1,
            id: EventId::derive(EventKind::Status, &["w", "read"]),
            kind: EventKind::TemplateQuality,
            received_ms: u64::MAX,
            ts: 0,
            waba_id: text.into(),
            field: "messages".into(),
            phone_number_id: Some(text.into()),
            display_phone_number: Some("15550783881".into()),
            message_key: Some(crate::privacy::Pseudonym([0xab; 16])),
            status: Some("read".into()),
            message_type: Some("".into()),
            person_masked: Some(person.masked),
            recipient_type: Some(text.into()),
            person_hash: Some(person.hash),
            user_hash: Some(person.hash),
            parent_user_hash: Some(person.hash),
            context_message_key: Some(crate::privacy::Pseudonym([0xcd; 16])),
            legacy_message_id: None,
            legacy_context_message_id: None,
            forwarded: Some(true),
            from_ad: Some(false),
            conversation_id: Some(text.into()),
            conversation_origin: Some(text.into()),
            conversation_expiration_ts: Some(1_750_000_000),
            pricing_model: Some(text.into()),
            pricing_category: Some(text.into()),
            pricing_type: Some(text.into()),
            billable: Some(false),
            error_code: Some(i64::MIN),
            error_title: Some(text.into()),
            template_id: Some(text.into()),
            template_name: Some(text.into()),
            template_language: Some(text.into()),
            update_event: Some(text.into()),
            reason: Some(text.into()),
            previous_quality: Some(text.into()),
            new_quality: Some(text.into()),
            current_limit: Some(text.into()),
            tenant: Some(text.into()),
            country_code: Some("91".into()),
            message_subtype: Some(text.into()),
            target_message_key: Some(crate::privacy::Pseudonym([0x01; 16])),
            group_key: Some(crate::privacy::Pseudonym([0x02; 16])),
            ad_source_type: Some(text.into()),
            ad_source_id: Some(text.into()),
            ad_click_key: Some(crate::privacy::Pseudonym([0x03; 16])),
            item_count: Some(u32::MAX),
            direction: Some(text.into()),
            call_start_ts: Some(1),
            call_end_ts: Some(u64::MAX),
            call_duration_s: Some(0),
            preference_category: Some(text.into()),
            preference: Some(text.into()),
            template_category: Some(text.into()),
            pause_title: Some(text.into()),
            previous_category: Some(text.into()),
            new_category: Some(text.into()),
            correct_category: Some(text.into()),
            alert_type: Some(text.into()),
            alert_severity: Some(text.into()),
            alert_status: Some(text.into()),
            decision: Some(text.into()),
            violation_type: Some(text.into()),
            ban_state: Some(text.into()),
            max_daily_conversations: Some(text.into()),
        }
    }

    fn hand(e: &Event<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode(e, &mut out);
        out
    }

    /// Every optional string of an event, for checks that must cover them all.
    fn optional_strings<'e>(e: &'e Event<'_>) -> [&'e Option<Cow<'e, str>>; 39] {
        [
            &e.phone_number_id,
            &e.display_phone_number,
            &e.status,
            &e.message_type,
            &e.recipient_type,
            &e.conversation_id,
            &e.conversation_origin,
            &e.pricing_model,
            &e.pricing_category,
            &e.pricing_type,
            &e.error_title,
            &e.template_id,
            &e.template_name,
            &e.template_language,
            &e.update_event,
            &e.reason,
            &e.previous_quality,
            &e.new_quality,
            &e.current_limit,
            &e.tenant,
            &e.country_code,
            &e.message_subtype,
            &e.ad_source_type,
            &e.ad_source_id,
            &e.direction,
            &e.preference_category,
            &e.preference,
            &e.template_category,
            &e.pause_title,
            &e.previous_category,
            &e.new_category,
            &e.correct_category,
            &e.alert_type,
            &e.alert_severity,
            &e.alert_status,
            &e.decision,
            &e.violation_type,
            &e.ban_state,
            &e.max_daily_conversations,
        ]
    }

    #[test]
    fn decoding_borrows_strings_without_escapes_and_copies_the_rest() {
        let plain = full_event("wamid.plain");
        let line = hand(&plain);
        let back: Event = serde_json::from_slice(&line).expect("decode");
        assert_eq!(back, plain);
        for field in optional_strings(&back) {
            assert!(matches!(field, Some(Cow::Borrowed(_))), "{field:?}");
        }
        let escaped = full_event("say \"hi\"\n");
        let line = hand(&escaped);
        let back: Event = serde_json::from_slice(&line).expect("decode");
        assert_eq!(back, escaped);
        assert!(matches!(back.reason, Some(Cow::Owned(_))));
    }

    #[test]
    fn writes_exactly_what_serde_writes() {
        let texts = [
            "plain",
            "",
            "quote \" backslash \\ slash /",
            "controls \n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}",
            "unicode é ✓ 𝄞 \u{2028}",
        ];
        for text in texts {
            let full = full_event(text);
            assert_eq!(
                String::from_utf8(hand(&full)).expect("utf-8"),
                serde_json::to_string(&full).expect("serde"),
                "{text:?}"
            );
        }
        let sparse = Event::default();
        assert_eq!(
            hand(&sparse),
            serde_json::to_vec(&sparse).expect("serde"),
            "absent fields are omitted"
        );
    }

    proptest::proptest! {
        /// Mostly plain text with escapes anywhere in it.
        #[test]
        fn strings_are_escaped_exactly_as_serde_does(
            s in "([a-z0-9 ._-]{0,11}[\"\\\\\\x00-\\x1f\\x7fé✓]?){0,6}"
        ) {
            let mut out = Vec::new();
            escaped(&mut out, &s);
            proptest::prop_assert_eq!(out, serde_json::to_vec(&s).expect("serde"));
        }
    }

    #[test]
    fn the_word_at_a_time_check_finds_every_escape_at_every_position() {
        for len in 0..24 {
            for at in 0..len {
                for b in [0x00, 0x1f, b'"', b'\\', 0x20, b'!', b'#', 0x7f, 0x80, 0xff] {
                    let mut buf = vec![b'a'; len];
                    buf[at] = b;
                    assert_eq!(
                        any_needs_escape(&buf),
                        needs_escape(b),
                        "{b:#x} at {at} of {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn appends_without_touching_what_is_there() {
        let mut out = b"prefix".to_vec();
        encode(&Event::default(), &mut out);
        assert!(out.starts_with(b"prefix{\"v\":0,"));
    }
}
