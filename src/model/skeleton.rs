//! What the dead-letter topic keeps of a signed body that cannot be parsed: its shape without
//! its content (schema: `schemas/dead-letter.v1.schema.json`).
//!
//! Invariant: nothing a person wrote or is identified by survives. Keys are kept when they
//! look like Meta's (lower-case identifiers), values become their type and length, and only
//! the values of a few enum-like keys (`field`, `status`, `type`, …) are kept, and only when
//! they are words (letters and underscores: no digit, so no number). The body's SHA-256 and
//! size let an operator match the record with Meta's delivery logs; the reason is redacted of
//! anything quoted.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub const SKELETON_VERSION: u16 = 1;

/// Headers of dead-letter records. The ingest's carry the kind and the reason (the time is
/// in the skeleton itself); the sink's carry the reason and where the line came from.
pub const HEADER_KIND: &str = "bluetick-dead-letter";
pub const HEADER_ERROR: &str = "bluetick-error";
pub const HEADER_SOURCE: &str = "bluetick-source";

/// Headers whose values are bluetick's own structure (`topic/partition/offset`), not data:
/// privacy scans skip them, since offsets are digit runs.
pub const STRUCTURAL_HEADERS: &[&str] = &[HEADER_SOURCE];

/// Keys whose values are enums in Meta's payloads and are kept when they are plain words.
const ENUM_KEYS: &[&str] = &[
    "object",
    "field",
    "status",
    "type",
    "messaging_product",
    "event",
    "recipient_type",
    "pricing_model",
    "category",
];

/// Deepest level described; below it a value is `"…"`.
const MAX_DEPTH: usize = 24;
/// Items described per list; the rest are counted.
const MAX_ITEMS: usize = 3;
/// Keys described per object; the rest are counted.
const MAX_KEYS: usize = 64;
/// A skeleton stops growing past about this many bytes.
const MAX_BYTES: usize = 64 * 1024;

/// The dead-letter record of `body`, refused for `reason` (already redacted).
pub fn skeleton(body: &[u8], reason: &str, received_ms: u64) -> Vec<u8> {
    let (json, shape) = match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            let mut budget = MAX_BYTES;
            (true, describe(&v, None, 0, &mut budget))
        }
        Err(_) => (false, Value::Null),
    };
    let record = serde_json::json!({
        "v": SKELETON_VERSION,
        "kind": "unparsed_webhook",
        "received_ms": received_ms,
        "size": body.len(),
        "sha256": hex::encode(Sha256::digest(body)),
        "reason": reason,
        "json": json,
        "shape": shape,
    });
    serde_json::to_vec(&record).unwrap_or_default()
}

fn describe(v: &Value, key: Option<&str>, depth: usize, budget: &mut usize) -> Value {
    if depth >= MAX_DEPTH || *budget == 0 {
        return Value::from("…");
    }
    let out = match v {
        Value::Null => Value::Null,
        Value::Bool(_) => Value::from("bool"),
        Value::Number(_) => Value::from("number"),
        Value::String(s) => match key {
            Some(k) if ENUM_KEYS.contains(&k) && is_word(s) => Value::from(format!("={s}")),
            _ => Value::from(format!("string:{}", s.chars().count())),
        },
        Value::Array(items) => {
            let mut out: Vec<Value> = items
                .iter()
                .take(MAX_ITEMS)
                .map(|i| describe(i, None, depth + 1, budget))
                .collect();
            if items.len() > MAX_ITEMS {
                out.push(Value::from(format!("+{} more", items.len() - MAX_ITEMS)));
            }
            Value::Array(out)
        }
        Value::Object(map) => {
            let mut out = Map::new();
            for (i, (k, item)) in map.iter().enumerate() {
                if i == MAX_KEYS {
                    out.insert("…".into(), Value::from(format!("+{} keys", map.len() - i)));
                    break;
                }
                let name = if is_key(k) {
                    k.clone()
                } else {
                    format!("?{i}")
                };
                let shape = describe(item, is_key(k).then_some(k.as_str()), depth + 1, budget);
                out.insert(name, shape);
            }
            Value::Object(out)
        }
    };
    *budget = budget.saturating_sub(16);
    out
}

/// A key as Meta names them: lower-case letters, digits and underscores, not too long, no run
/// of digits (a map keyed by phone numbers would otherwise keep them).
fn is_key(k: &str) -> bool {
    (1..=40).contains(&k.len())
        && k.bytes().next().is_some_and(|c| c.is_ascii_lowercase())
        && k.bytes()
            .all(|c| c.is_ascii_lowercase() || c == b'_' || c.is_ascii_digit())
        && k.bytes().filter(u8::is_ascii_digit).count() <= 2
}

/// Letters and underscores only, 1–40 of them.
fn is_word(s: &str) -> bool {
    (1..=40).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_alphabetic() || c == b'_')
}

/// A parser's error message without what it quoted from the input (serde quotes the value
/// it did not expect, which could be anything a person wrote) and without long digit runs.
pub fn redact_reason(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quote: Option<char> = None;
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.len() >= 8 {
            out.push('#');
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in message.chars() {
        match quote {
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                quote = None;
            }
            Some(_) => {}
            None if matches!(c, '"' | '\'' | '`') => {
                flush(&mut digits, &mut out);
                out.push(c);
                quote = Some(c);
            }
            None if c.is_ascii_digit() => digits.push(c),
            None => {
                flush(&mut digits, &mut out);
                out.push(c);
            }
        }
    }
    if quote.is_some() {
        out.push('…');
    }
    flush(&mut digits, &mut out);
    out.chars().take(250).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{
        "contacts":[{"profile":{"name":"SECRET-NAME Jane Roe"},"wa_id":"919876544321"}],
        "messages":[{"from":"919876544321","id":"wamid.HBgMOTE5ODc2NTQ0MzIxFQIAEhgUM0FFNTVCQzgxQzNBQUExQzUwMEMA","type":"text","text":{"body":"SECRET my address is 12 Main St"},"errors":null,"context":"SECRET-CONTEXT"}],
        "919876544321":{"type":"919876544321"}}}]}]}"#;

    #[test]
    fn keeps_the_shape_and_no_content_or_number() {
        let rec = skeleton(BODY.as_bytes(), "not a webhook", 5);
        let text = String::from_utf8(rec.clone()).expect("utf-8");
        for leak in ["SECRET", "Jane", "9198765", "Main St", "HBgM"] {
            assert!(!text.contains(leak), "{leak} in {text}");
        }
        assert!(crate::privacy::detect::scan(&text).is_none(), "{text}");
        let v: Value = serde_json::from_slice(&rec).expect("json");
        assert_eq!(v["json"], true);
        assert_eq!(v["size"], BODY.len());
        assert_eq!(v["sha256"], hex::encode(Sha256::digest(BODY.as_bytes())));
        assert_eq!(v["shape"]["object"], "=whatsapp_business_account");
        let value = &v["shape"]["entry"][0]["changes"][0]["value"];
        assert_eq!(v["shape"]["entry"][0]["changes"][0]["field"], "=messages");
        assert_eq!(value["messages"][0]["type"], "=text");
        assert_eq!(value["messages"][0]["text"]["body"], "string:31");
        assert_eq!(value["messages"][0]["errors"], Value::Null);
        assert!(
            value.get("919876544321").is_none(),
            "a digit key is not kept"
        );
    }

    #[test]
    fn the_record_matches_its_schema() {
        let schema: Value =
            serde_json::from_str(include_str!("../../schemas/dead-letter.v1.schema.json"))
                .expect("schema");
        let want: Vec<&String> = schema["properties"]
            .as_object()
            .expect("props")
            .keys()
            .collect();
        let rec: Value = serde_json::from_slice(&skeleton(BODY.as_bytes(), "r", 1)).expect("json");
        let got: Vec<&String> = rec.as_object().expect("object").keys().collect();
        let (mut want, mut got) = (want, got);
        want.sort();
        got.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn bodies_that_are_not_json_keep_size_and_hash_only() {
        let body = b"SECRET 919876544321 {";
        let v: Value = serde_json::from_slice(&skeleton(body, "syntax", 1)).expect("json");
        assert_eq!(
            (v["json"].clone(), v["shape"].clone()),
            (Value::Bool(false), Value::Null)
        );
        assert_eq!(v["size"], body.len());
    }

    #[test]
    fn deep_and_wide_bodies_stay_small() {
        let deep = format!("{}1{}", "[".repeat(120), "]".repeat(120));
        assert!(skeleton(deep.as_bytes(), "deep", 1).len() < 4096);
        let wide = format!("[{}]", vec!["{\"a\":1}"; 100_000].join(","));
        assert!(skeleton(wide.as_bytes(), "wide", 1).len() < 4096);
    }

    #[test]
    fn reasons_lose_what_they_quote() {
        let r = redact_reason(
            r#"invalid type: string "SECRET 919876544321", expected a sequence at line 1 column 1234"#,
        );
        assert_eq!(
            r,
            r#"invalid type: string "…", expected a sequence at line 1 column 1234"#
        );
        assert_eq!(
            redact_reason("digits 919876544321 and ('x')"),
            "digits # and ('…')"
        );
    }
}
