//! A lenient, borrowed scalar for Meta's payloads, where the same key is a string in one
//! webhook and a number in another (`message_template_id`, error `code`, timestamps).
//!
//! Invariant: deserializing a `Text` never fails on a type mismatch. Strings borrow from the
//! request body; numbers and booleans are kept as their text; objects and arrays are skipped
//! and read as empty, so an unexpected shape in one field cannot reject a whole webhook.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text<'a>(pub Cow<'a, str>);

impl<'a> Text<'a> {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Unix seconds as Meta sends them (`"1700000000"`, sometimes a bare number).
    pub fn as_u64(&self) -> Option<u64> {
        self.0.trim().parse().ok()
    }

    pub fn as_i64(&self) -> Option<i64> {
        self.0.trim().parse().ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(s: &'a str) -> Self {
        Text(Cow::Borrowed(s))
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(v.to_string())))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(v.to_string())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(v.to_string())))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed(if v { "true" } else { "false" })))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Text::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Text::default())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Text::default())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_strings_numbers_and_skips_objects() {
        let v: Vec<Text> = serde_json::from_str(r#"["a", 12, -3, true, null, {"x":[1]}, [1,2]]"#)
            .expect("lenient parse");
        let got: Vec<&str> = v.iter().map(Text::as_str).collect();
        assert_eq!(got, ["a", "12", "-3", "true", "", "", ""]);
    }

    #[test]
    fn borrows_from_simd_json_input() {
        let mut buf = br#"{"k":"caf\u00e9"}"#.to_vec();
        let v: std::collections::HashMap<&str, Text> =
            simd_json::serde::from_slice(&mut buf).expect("parse");
        assert_eq!(v["k"].as_str(), "café");
        assert!(matches!(v["k"].0, Cow::Borrowed(_)));
    }

    #[test]
    fn timestamps_parse_from_text() {
        assert_eq!(Text::from("1700000000").as_u64(), Some(1_700_000_000));
        assert_eq!(Text::from("x").as_u64(), None);
    }
}
