//! Masked display form of a phone number, e.g. `91XXXXXX4321`.
//!
//! Invariant: at most six digits of a number survive masking (two leading, four trailing), and
//! fewer for short numbers, so a masked value never identifies a person on its own. Both types
//! here live on the stack: masking allocates nothing.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// E.164 allows 15 digits; we keep room for a few more from odd inputs and truncate beyond.
const MAX_DIGITS: usize = 20;

/// The digits of a phone number, `+`, spaces and punctuation removed.
#[derive(Clone, Copy)]
pub struct Digits {
    buf: [u8; MAX_DIGITS],
    len: u8,
}

impl Digits {
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever written.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or_default()
    }
}

/// Keeps the ASCII digits of `raw`, so `+91 98765-43210` and `919876543210` are one person.
pub fn normalize(raw: &str) -> Digits {
    let mut d = Digits {
        buf: [0; MAX_DIGITS],
        len: 0,
    };
    for b in raw.bytes().filter(u8::is_ascii_digit) {
        if (d.len as usize) == MAX_DIGITS {
            break;
        }
        d.buf[d.len as usize] = b;
        d.len += 1;
    }
    d
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MaskedPhone {
    buf: [u8; MAX_DIGITS],
    len: u8,
}

impl MaskedPhone {
    /// Keeps 2 leading + 4 trailing digits of numbers of 10+ digits, 2 trailing of 6–9 digits,
    /// none of shorter ones; every other digit becomes `X`.
    pub fn from_digits(digits: &str) -> Self {
        let n = digits.len().min(MAX_DIGITS);
        let (head, tail) = match n {
            10.. => (2, 4),
            6..=9 => (0, 2),
            _ => (0, 0),
        };
        let mut m = MaskedPhone {
            buf: [b'X'; MAX_DIGITS],
            len: n as u8,
        };
        let src = &digits.as_bytes()[..n];
        m.buf[..head].copy_from_slice(&src[..head]);
        m.buf[n - tail..n].copy_from_slice(&src[n - tail..]);
        m
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// Reads a value written by [`as_str`](Self::as_str); anything that is not digits or `X`,
    /// or shows more digits than masking keeps, is refused, so a raw number can never pass
    /// for a masked one downstream.
    pub fn parse(s: &str) -> Option<Self> {
        Self::parse_bytes(s.as_bytes())
    }

    /// As [`parse`](Self::parse), from bytes: only ASCII digits and `X` pass, so no UTF-8
    /// check is needed first (the sink reads masked numbers this way from protobuf records).
    pub fn parse_bytes(s: &[u8]) -> Option<Self> {
        if s.len() > MAX_DIGITS {
            return None;
        }
        let mut digits = 0;
        for &b in s {
            match b {
                b'0'..=b'9' => digits += 1,
                b'X' => {}
                _ => return None,
            }
        }
        if digits > 6 {
            return None;
        }
        let mut m = MaskedPhone {
            buf: [b'X'; MAX_DIGITS],
            len: s.len() as u8,
        };
        m.buf[..s.len()].copy_from_slice(s);
        Some(m)
    }

    /// The same text without the UTF-8 check (only ASCII digits and `X` are ever written), for
    /// the event encoder.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl fmt::Debug for MaskedPhone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for MaskedPhone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for MaskedPhone {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MaskedPhone {
    /// See [`MaskedPhone::parse`].
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <&str>::deserialize(d)?;
        MaskedPhone::parse(s).ok_or_else(|| serde::de::Error::custom("not a masked phone number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn masks_indian_mobile_like_the_policy_says() {
        let d = normalize("+91 98765-44321");
        assert_eq!(d.as_str(), "919876544321");
        assert_eq!(
            MaskedPhone::from_digits(d.as_str()).as_str(),
            "91XXXXXX4321"
        );
    }

    #[test]
    fn short_numbers_keep_less() {
        assert_eq!(MaskedPhone::from_digits("1234567").as_str(), "XXXXX67");
        assert_eq!(MaskedPhone::from_digits("12345").as_str(), "XXXXX");
        assert_eq!(MaskedPhone::from_digits("").as_str(), "");
    }

    #[test]
    fn deserialize_refuses_unmasked_numbers() {
        let r: Result<MaskedPhone, _> = serde_json::from_str("\"919876544321\"");
        assert!(r.is_err());
        let m: MaskedPhone = serde_json::from_str("\"91XXXXXX4321\"").expect("masked");
        assert_eq!(m.as_str(), "91XXXXXX4321");
    }

    /// The byte reader the sink uses passes exactly what the text reader passes.
    #[test]
    fn bytes_pass_only_digits_and_x_with_six_digits_at_most() {
        for ok in ["91XXXXXX4321", "XXXXX67", "", "123456"] {
            assert_eq!(
                MaskedPhone::parse_bytes(ok.as_bytes()).map(|m| m.to_string()),
                Some(ok.into())
            );
        }
        let refused: [&[u8]; 6] = [
            b"919876544321",
            b"1234567",
            b"91-XXXX",
            "\u{ff19}1XXXX".as_bytes(),
            b"91\xffXXXX",
            &[b'X'; MAX_DIGITS + 1],
        ];
        for bad in refused {
            assert!(MaskedPhone::parse_bytes(bad).is_none(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn never_reveals_more_than_six_digits(raw in "[+0-9 ()-]{0,40}") {
            let d = normalize(&raw);
            let m = MaskedPhone::from_digits(d.as_str());
            let shown = m.as_str().bytes().filter(u8::is_ascii_digit).count();
            prop_assert!(shown <= 6);
            prop_assert_eq!(m.as_str().len(), d.as_str().len());
        }
    }
}
