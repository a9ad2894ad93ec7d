//! Finds what the privacy promise says is never kept: phone numbers, ids that decode to one
//! (Meta's `wamid.`/`wacid.` ids are base64 whose payload starts with the number in clear),
//! and business-scoped user ids. `bluetick audit` runs it over live tables and topics; the
//! tests run it over everything the pipeline wrote, the way an auditor would.
//!
//! It looks at text only and knows nothing of columns: a caller exempts the columns that hold
//! the business's own identifiers (its phone number, WABA and phone-number ids), which are
//! digit strings by design. Our own hex (keys, hashes, event ids) is decoded and checked, not
//! skipped.

use super::MaskedPhone;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};

/// Fewest and most digits of a phone number (E.164 allows 15; 8 is about the shortest
/// subscriber number with a country code).
const MIN_DIGITS: usize = 8;
const MAX_DIGITS: usize = 15;

/// Shortest token worth decoding: a wamid's payload is ~40 characters, and short tokens are
/// words, not encodings.
const MIN_ENCODED: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A run of 8–15 digits (separators allowed between groups) standing on its own.
    Number,
    /// A token that decodes (base64 or hex) to bytes holding such a digit run.
    EncodedNumber,
    /// Something shaped like a business-scoped user id (`US.1349…`, `US.ENT.1181…`).
    UserId,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Number => "phone_number",
            Kind::EncodedNumber => "id_decodes_to_number",
            Kind::UserId => "user_id",
        }
    }
}

/// One finding, with a sample fit to print: the number masked, never in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub kind: Kind,
    pub sample: String,
}

/// The first thing in `text` that must not be kept, if any.
pub fn scan(text: &str) -> Option<Hit> {
    if let Some(hit) = loose_number(text) {
        return Some(hit);
    }
    text.split(|c: char| !is_token_char(c))
        .filter(|t| !t.is_empty())
        .find_map(scan_token)
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '_' | '-' | '.')
}

/// A phone number written with separators (`+91 98765 43210`, `(555) 123-4567`): digit
/// groups joined by single spaces, dashes, dots or parentheses, not glued to letters.
fn loose_number(text: &str) -> Option<Hit> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() || (i > 0 && b[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        let (mut j, mut digits, mut end) = (i, Vec::new(), i);
        while j < b.len() {
            if b[j].is_ascii_digit() {
                digits.push(b[j]);
                j += 1;
                end = j;
            } else if is_separator(b[j])
                && (b.get(j + 1).is_some_and(u8::is_ascii_digit)
                    || (b.get(j + 1).is_some_and(|n| is_separator(*n))
                        && b.get(j + 2).is_some_and(u8::is_ascii_digit)))
            {
                // One or two separators between digit groups: `-`, `) `.
                j += 1;
            } else {
                break;
            }
        }
        let glued = b.get(end).is_some_and(u8::is_ascii_alphanumeric);
        if !glued && !is_date(&b[i..end]) && (MIN_DIGITS..=MAX_DIGITS).contains(&digits.len()) {
            return Some(number_hit(Kind::Number, &digits));
        }
        i = end.max(i + 1);
    }
    None
}

/// `YYYY-MM-DD` (or with `.`), a date and not a phone number.
fn is_date(run: &[u8]) -> bool {
    let d =
        |r: std::ops::Range<usize>| run.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    run.len() >= 10
        && d(0..4)
        && d(5..7)
        && d(8..10)
        && run[4] == run[7]
        && matches!(run[4], b'-' | b'.')
        && matches!(&run[..2], b"19" | b"20")
}

fn is_separator(c: u8) -> bool {
    matches!(c, b' ' | b'-' | b'.' | b'(' | b')')
}

fn scan_token(token: &str) -> Option<Hit> {
    if is_user_id(token) {
        let shown: String = token.chars().take(5).collect();
        return Some(Hit {
            kind: Kind::UserId,
            sample: format!("{shown}…"),
        });
    }
    // `wamid.<base64>`, `wacid.<base64>`: look at each dot-separated part.
    token.split('.').find_map(|part| {
        digit_run(part.as_bytes())
            .filter(|_| !is_hex(part) || part.bytes().all(|c| c.is_ascii_digit()))
            .map(|d| number_hit(Kind::Number, d))
            .or_else(|| decoded_number(part))
    })
}

/// A user id as [`super::person::is_user_id`] reads one, with a digit in it and six
/// characters at least, so words like `US.dollar` do not count.
fn is_user_id(token: &str) -> bool {
    let id = token.rsplit('.').next().unwrap_or_default();
    super::person::is_user_id(token) && id.len() >= 6 && id.bytes().any(|c| c.is_ascii_digit())
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_hexdigit())
}

/// A maximal run of 8–15 ASCII digits in `bytes`.
fn digit_run(bytes: &[u8]) -> Option<&[u8]> {
    bytes
        .split(|c| !c.is_ascii_digit())
        .find(|run| (MIN_DIGITS..=MAX_DIGITS).contains(&run.len()))
}

/// Decodes `part` as hex or base64 (standard or URL-safe, padded or not) and looks for a
/// number in the bytes.
fn decoded_number(part: &str) -> Option<Hit> {
    if part.len() < MIN_ENCODED {
        return None;
    }
    let decoded = if is_hex(part) && part.len() % 2 == 0 {
        hex::decode(part).ok()
    } else {
        base64_lenient(part)
    }?;
    let digits = digit_run(&decoded)?;
    let masked = MaskedPhone::from_digits(std::str::from_utf8(digits).unwrap_or_default());
    let head: String = part.chars().take(8).collect();
    Some(Hit {
        kind: Kind::EncodedNumber,
        sample: format!("{head}… decodes to {masked}"),
    })
}

fn base64_lenient(s: &str) -> Option<Vec<u8>> {
    let config = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    let url_safe = s.contains(['-', '_']);
    let engine = GeneralPurpose::new(
        if url_safe {
            &alphabet::URL_SAFE
        } else {
            &alphabet::STANDARD
        },
        config,
    );
    let trimmed = s.trim_end_matches('=');
    // A length of 4n+1 cannot be base64; the number sits at the start, so drop the tail.
    let usable = if trimmed.len() % 4 == 1 {
        &trimmed[..trimmed.len() - 1]
    } else {
        trimmed
    };
    engine.decode(usable).ok()
}

fn number_hit(kind: Kind, digits: &[u8]) -> Hit {
    let text = std::str::from_utf8(digits).unwrap_or_default();
    Hit {
        kind,
        sample: MaskedPhone::from_digits(text).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> Option<Kind> {
        scan(text).map(|h| h.kind)
    }

    #[test]
    fn numbers_in_any_formatting_are_found_and_shown_masked() {
        for t in [
            "919876543210",
            "+91 98765 43210",
            "call (555) 123-4567 now",
            "tel:15551234567",
            "x 447700900123",
        ] {
            assert_eq!(kind(t), Some(Kind::Number), "{t}");
        }
        let hit = scan("+91 98765 43210").expect("found");
        assert_eq!(hit.sample, "91XXXXXX3210");
        for t in [
            "91XXXXXX4321",
            "1234567",
            "order 5531",
            "",
            "2026-11-30 12:00:00",
        ] {
            assert_eq!(kind(t), None, "{t}");
        }
    }

    #[test]
    fn meta_ids_that_carry_the_number_are_found() {
        // 1c 18 0b "15551234567" …, as Meta makes them (standard and URL-safe base64).
        let wamid = "wamid.HBgLMTU1NTEyMzQ1NjcVAgARGBI3MDA4RjU3QkRCQUM2QkQ5QjUA";
        let hit = scan(wamid).expect("found");
        assert_eq!(hit.kind, Kind::EncodedNumber);
        assert!(hit.sample.ends_with("15XXXXX4567"), "{}", hit.sample);
        assert_eq!(
            kind("wamid.HBgMOTE5MDk2MDUzOTcwFQIAERgSMDhFNzkzQ0QzQUMzQTVGQjA2AA=="),
            Some(Kind::EncodedNumber)
        );
        let hexed = hex::encode("id:919876543210");
        assert_eq!(kind(&hexed), Some(Kind::EncodedNumber));
    }

    #[test]
    fn our_own_keys_and_hashes_pass() {
        let key = crate::privacy::IdKey::new(b"k-0123456789abcdef");
        let pepper = crate::privacy::Pepper::new(b"p-0123456789abcdef");
        for i in 0..2000 {
            let id = format!("wamid.{i}");
            assert_eq!(kind(key.pseudonym(&id).to_hex().as_str()), None, "{id}");
            let h = pepper.hash_phone(&format!("9198{i:08}"));
            assert_eq!(kind(h.to_hex().as_str()), None, "{i}");
        }
    }

    #[test]
    fn business_scoped_user_ids_are_found() {
        for t in [
            "US.13491208655302741918",
            "IN.1648738043044942",
            "US.ENT.11815799212886844830",
        ] {
            assert_eq!(kind(t), Some(Kind::UserId), "{t}");
        }
        for t in ["utility", "US.dollar", "wamid.abc"] {
            assert_eq!(kind(t), None, "{t}");
        }
    }
}
