//! The identifiers `bluetick erase` erased, and when: an event of such a person that happened
//! before their erasure is dropped, never stored again, whether it comes from a sink backlog,
//! a replay, a new consumer group or a late retry of Meta's.
//!
//! The list is `erasure_audit` itself (erase writes its rows before it deletes anything).
//! It is reloaded when its row count or newest time changes, which costs one small query
//! per batch; erasures older than the longest retention are not loaded, since the sink drops
//! events that old anyway.

use crate::clickhouse::{ClickHouse, ClickHouseError};
use crate::model::tables::ERASURE_AUDIT;
use crate::model::Event;
use crate::privacy::PersonHash;
use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct Erased {
    /// Identifier hash → Unix seconds of its latest erasure.
    at: HashMap<PersonHash, u64>,
    /// (rows, newest erasure) of the audit when `at` was loaded.
    seen: Option<(u64, u32)>,
}

impl Erased {
    /// The list as the audit holds it now, or `None` if the audit has not changed since
    /// `self` was loaded. `keep_days` bounds how far back erasures matter (the longest table
    /// retention).
    pub async fn reload(
        ch: ClickHouse,
        keep_days: u32,
        seen: Option<(u64, u32)>,
    ) -> Result<Option<Erased>, ClickHouseError> {
        let sql = format!(
            "SELECT count() AS rows, toUInt32(max(requested_at)) AS newest FROM {}",
            ch.table(ERASURE_AUDIT)
        );
        let state: (u64, u32) = ch
            .client()
            .query(&sql)
            .fetch_one()
            .await
            .map_err(|e| ch.error(e))?;
        if seen == Some(state) {
            return Ok(None);
        }
        let sql = format!(
            "SELECT person_hash, toUInt32(max(requested_at)) FROM {} \
             WHERE requested_at >= now() - {} GROUP BY person_hash",
            ch.table(ERASURE_AUDIT),
            (u64::from(keep_days) + 1) * 86_400
        );
        let rows: Vec<(String, u32)> = ch.fetch_all(&sql).await?;
        Ok(Some(Erased {
            at: rows
                .into_iter()
                .filter_map(|(hex, at)| Some((PersonHash::from_hex(&hex)?, u64::from(at))))
                .collect(),
            seen: Some(state),
        }))
    }

    /// What the audit looked like when this list was loaded.
    pub fn seen(&self) -> Option<(u64, u32)> {
        self.seen
    }

    /// Whether `e` is about an erased person and happened before their erasure.
    pub fn covers(&self, e: &Event<'_>) -> bool {
        if self.at.is_empty() {
            return false;
        }
        [e.person_hash, e.user_hash, e.parent_user_hash]
            .iter()
            .flatten()
            .any(|h| self.at.get(h).is_some_and(|at| e.ts < *at))
    }

    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    #[cfg(test)]
    pub fn with(entries: &[(PersonHash, u64)]) -> Self {
        Erased {
            at: entries.iter().copied().collect(),
            seen: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::Pepper;

    #[test]
    fn events_before_the_erasure_are_covered_and_later_ones_not() {
        let pepper = Pepper::new(b"pepper-0123456789");
        let phone = pepper.hash_phone("919876544321");
        let user = pepper.hash_user("US.1234567890");
        let erased = Erased::with(&[(phone, 1_000), (user, 2_000)]);
        let at = |ts, p: Option<PersonHash>, u: Option<PersonHash>| Event {
            ts,
            person_hash: p,
            user_hash: u,
            ..Event::default()
        };
        assert!(erased.covers(&at(999, Some(phone), None)));
        assert!(
            !erased.covers(&at(1_000, Some(phone), None)),
            "after the erasure"
        );
        assert!(erased.covers(&at(1_500, None, Some(user))));
        assert!(erased.covers(&at(1_500, Some(pepper.hash_phone("1")), Some(user))));
        assert!(!erased.covers(&at(5, None, None)));
        assert!(!Erased::default().covers(&at(5, Some(phone), None)));
    }
}
