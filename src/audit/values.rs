//! The checks every stored or produced value goes through, and the tally of what they find.
//!
//! Business identifiers (WABA, phone-number and template ids, the business's display number)
//! are digit strings by design and are not checked for numbers; bluetick's own structural
//! headers (`topic/partition/offset`) neither. That is what the audit cannot see: a number
//! written into one of those, or content short enough to pass for a code.

use super::Finding;
use crate::model::record;
use crate::model::skeleton::STRUCTURAL_HEADERS;
use crate::model::tables::{max_len, BUSINESS_ID_COLUMNS};
use crate::privacy::detect;
use std::collections::BTreeMap;

/// Findings by (check, place): a count and the first sample.
#[derive(Debug, Default)]
pub struct Findings {
    by_place: BTreeMap<(&'static str, String), (u64, String)>,
}

impl Findings {
    pub fn add(&mut self, check: &'static str, place: &str, sample: String) {
        self.add_n(check, place, 1, sample);
    }

    pub fn add_n(&mut self, check: &'static str, place: &str, n: u64, sample: String) {
        let entry = self
            .by_place
            .entry((check, place.to_string()))
            .or_insert((0, sample));
        entry.0 += n;
    }

    pub fn is_empty(&self) -> bool {
        self.by_place.is_empty()
    }

    /// Adds another tally's findings to this one.
    pub fn merge(&mut self, other: Findings) {
        for ((check, place), (n, sample)) in other.by_place {
            self.add_n(check, &place, n, sample);
        }
    }

    pub fn into_list(self) -> Vec<Finding> {
        self.by_place
            .into_iter()
            .map(|((check, place), (count, sample))| Finding {
                check,
                place,
                count,
                sample,
            })
            .collect()
    }

    /// Checks one value of `column` (a table column or an event field) found at `place`:
    /// people (numbers, ids that decode to one, user ids) and length.
    pub fn value(&mut self, place: &str, column: &str, value: &str) {
        if value.is_empty() {
            return;
        }
        if !BUSINESS_ID_COLUMNS.contains(&column) {
            if let Some(hit) = detect::scan(value) {
                self.add(hit.kind.as_str(), place, hit.sample);
            }
        }
        let len = value.chars().count();
        if len > max_len(column) {
            let head: String = value.chars().take(12).collect();
            let head = detect::scan(&head).map_or(head, |_| "…".to_string());
            self.add(
                "content_length",
                place,
                format!("{len} characters ({head}…), at most {}", max_len(column)),
            );
        }
    }

    /// Checks a JSON value from a topic, field by field (JSON Lines: a line at a time).
    pub fn json(&mut self, place: &str, key: &str, v: &serde_json::Value) {
        match v {
            serde_json::Value::String(s) => self.value(place, key, s),
            serde_json::Value::Array(items) => items.iter().for_each(|i| self.json(place, key, i)),
            serde_json::Value::Object(map) => {
                for (k, item) in map {
                    if let Some(hit) = detect::scan(k) {
                        self.add(hit.kind.as_str(), place, hit.sample);
                    }
                    self.json(place, k, item);
                }
            }
            _ => {}
        }
    }

    /// Checks one Kafka record: its headers (bar bluetick's structural ones) and its payload,
    /// event by event (a protobuf event read as its JSON would be), JSON line by line, or as
    /// text where it does not decode.
    pub fn record<'h>(
        &mut self,
        place: &str,
        headers: impl Iterator<Item = (&'h str, &'h [u8])>,
        payload: &[u8],
    ) {
        for (key, value) in headers.filter(|(k, _)| !STRUCTURAL_HEADERS.contains(k)) {
            self.value(place, key, &String::from_utf8_lossy(value));
        }
        let format = record::format_of(payload);
        for line in record::lines(payload).map(|r| &payload[r]) {
            match record::to_json(format, line) {
                Some(v) => self.json(place, "", &v),
                None => self.value(place, "", &String::from_utf8_lossy(line)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_for_people_and_length_and_tallied() {
        let mut f = Findings::default();
        f.value("t.waba_id", "waba_id", "102290129340398");
        f.value("t.status", "status", "read");
        assert!(f.is_empty(), "business ids and codes pass");
        f.value("t.status", "status", "919876543210");
        f.value("t.status", "status", "919876543211");
        f.value("t.error_title", "error_title", &"SECRET ".repeat(50));
        f.value(
            "t.message_id",
            "message_id",
            "wamid.HBgLMTU1NTEyMzQ1NjcVAgARGBI3MDA4RjU3QkRCQUM2QkQ5QjUA",
        );
        let list = f.into_list();
        let by: Vec<(&str, &str, u64)> = list
            .iter()
            .map(|f| (f.check, f.place.as_str(), f.count))
            .collect();
        assert!(by.contains(&("phone_number", "t.status", 2)), "{by:?}");
        assert!(
            by.contains(&("content_length", "t.error_title", 1)),
            "{by:?}"
        );
        assert!(
            by.contains(&("id_decodes_to_number", "t.message_id", 1)),
            "{by:?}"
        );
        assert!(
            by.contains(&("content_length", "t.message_id", 1)),
            "{by:?}"
        );
        for f in &list {
            assert!(!f.sample.contains("919876543210"), "{f:?}");
        }
    }

    #[test]
    fn records_are_checked_line_by_line_and_structural_headers_skipped() {
        let mut f = Findings::default();
        let headers = [("bluetick-source", &b"t.events/0/123456789"[..])];
        f.record(
            "dlq/0",
            headers.into_iter(),
            b"{\"a\":\"ok\"}\n{\"b\":\"US.13491208655302741918\"}",
        );
        let list = f.into_list();
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0].check, "user_id");
    }
}
