//! The ClickHouse tables bluetick writes (created by `schemas/clickhouse/`), and the one rule
//! that says which days of each are past retention. The sink (which skips rows already that
//! old) and `bluetick retention` (which drops their partitions) share it, so they can never
//! disagree about a day.

use crate::config::RetentionConfig;

const DAY_SECS: u64 = 86_400;

/// The record of erasures: names people by hash too, but is the proof that they were erased,
/// so it is neither erased nor exported. Erase writes its rows before it deletes anything;
/// the sink reads them to keep erased people out (see `sink::erased`).
pub const ERASURE_AUDIT: &str = "erasure_audit";

/// The columns that hold a person's identifiers, each as a keyed hash: the phone number's,
/// the business-scoped user id's and the parent user id's. A table holds people if it has
/// the first.
pub const PERSON_COLUMNS: [&str; 3] = ["person_hash", "user_hash", "parent_user_hash"];

/// Columns (and event fields) that hold the business's own identifiers — its WABA id, phone
/// number id, display number, template ids and the ids of its ads — which are digit strings
/// by design and identify no person. A privacy scan exempts them, and says so.
pub const BUSINESS_ID_COLUMNS: &[&str] = &[
    "waba_id",
    "phone_number_id",
    "display_phone_number",
    "template_id",
    "ad_source_id",
];

/// The longest value each string column's purpose allows, in characters: a code, an enum, a
/// hash or a title fits; a longer value is content where metadata belongs. Columns not
/// listed allow [`DEFAULT_MAX_LEN`].
pub const COLUMN_MAX_LEN: &[(&str, usize)] = &[
    ("event_id", 32),
    ("message_id", 32),
    ("context_message_id", 32),
    ("person_hash", 64),
    ("user_hash", 64),
    ("parent_user_hash", 64),
    ("person_masked", 20),
    ("status", 40),
    ("message_type", 40),
    ("recipient_type", 40),
    ("kind", 40),
    ("field", 64),
    ("conversation_id", 64),
    ("conversation_origin", 64),
    ("pricing_model", 40),
    ("pricing_category", 64),
    ("pricing_type", 64),
    ("update_event", 64),
    ("previous_quality", 40),
    ("new_quality", 40),
    ("current_limit", 40),
    ("template_language", 16),
    ("template_name", 512),
    ("error_title", 256),
    ("reason", 256),
    ("source_ip", 45),
    ("route", 32),
    ("tenant", 64),
    ("country_code", 3),
    ("message_subtype", 64),
    ("target_message_id", 32),
    ("group_id", 32),
    ("ad_click_id", 32),
    ("call_id", 32),
    ("ad_source_type", 16),
    ("ad_source_id", 32),
    ("direction", 32),
    ("category", 64),
    ("preference", 16),
    ("template_category", 40),
    ("pause_title", 40),
    ("previous_category", 40),
    ("new_category", 40),
    ("correct_category", 40),
    ("alert_type", 64),
    ("alert_severity", 32),
    ("alert_status", 32),
    ("decision", 40),
    ("violation_type", 64),
    ("ban_state", 64),
    ("max_daily_conversations", 40),
];

/// The limit of string columns not in [`COLUMN_MAX_LEN`].
pub const DEFAULT_MAX_LEN: usize = 256;

/// The longest value `column` may hold.
pub fn max_len(column: &str) -> usize {
    COLUMN_MAX_LEN
        .iter()
        .find(|(c, _)| *c == column)
        .map_or(DEFAULT_MAX_LEN, |(_, n)| *n)
}

/// Columns of Meta's ids, which hold keyed pseudonyms (never the raw id) since schema 004.
pub const ID_COLUMNS: &[(&str, &[&str])] = &[
    ("message_status", &["message_id"]),
    (
        "inbound_message",
        &[
            "message_id",
            "context_message_id",
            "target_message_id",
            "group_id",
            "ad_click_id",
        ],
    ),
    ("call_event", &["call_id"]),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    MessageStatus,
    InboundMessage,
    AccountEvent,
    SecurityEvent,
    CallEvent,
    OptOut,
}

impl Table {
    pub const ALL: [Table; 6] = [
        Table::MessageStatus,
        Table::InboundMessage,
        Table::AccountEvent,
        Table::SecurityEvent,
        Table::CallEvent,
        Table::OptOut,
    ];

    /// Position in [`Table::ALL`] (declaration order), for per-table arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Table::MessageStatus => "message_status",
            Table::InboundMessage => "inbound_message",
            Table::AccountEvent => "account_event",
            Table::SecurityEvent => "security_event",
            Table::CallEvent => "call_event",
            Table::OptOut => "opt_out",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Why the table is kept, as the policy states it.
    pub fn basis(self, cfg: &RetentionConfig) -> &str {
        match self {
            Table::MessageStatus => &cfg.message_status_basis,
            Table::InboundMessage => &cfg.inbound_message_basis,
            Table::AccountEvent => &cfg.account_event_basis,
            Table::SecurityEvent => &cfg.security_event_basis,
            Table::CallEvent => &cfg.call_event_basis,
            Table::OptOut => &cfg.opt_out_basis,
        }
    }

    pub fn retention_days(self, cfg: &RetentionConfig) -> u32 {
        match self {
            Table::MessageStatus => cfg.message_status_days,
            Table::InboundMessage => cfg.inbound_message_days,
            Table::AccountEvent => cfg.account_event_days,
            Table::SecurityEvent => cfg.security_event_days,
            Table::CallEvent => cfg.call_event_days,
            Table::OptOut => cfg.opt_out_days,
        }
    }
}

/// Days since the Unix epoch (UTC) of a time in seconds: the partition a row lands in.
pub fn day_of(ts_secs: u64) -> u64 {
    ts_secs / DAY_SECS
}

/// The oldest day still kept at `now_secs` when a table keeps `days` days: a day is dropped
/// once all of it is more than `days` days old, i.e. when it ended before `now - days`.
pub fn first_kept_day(now_secs: u64, days: u32) -> u64 {
    now_secs.saturating_sub(u64::from(days) * DAY_SECS) / DAY_SECS
}

/// `YYYYMMDD` of a day number, the partition id `toYYYYMMDD(ts)` gives.
pub fn yyyymmdd(day: u64) -> u32 {
    // Civil-from-days (Howard Hinnant's algorithm), valid for every day after the epoch.
    let z = day as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y * 10_000 + m * 100 + d) as u32
}

/// The day number of a `YYYYMMDD` partition id; `None` if it is not a date.
pub fn day_from_yyyymmdd(id: u32) -> Option<u64> {
    let (y, m, d) = (
        i64::from(id / 10_000),
        i64::from(id / 100 % 100),
        i64::from(id % 100),
    );
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days-from-civil, the inverse of `yyyymmdd`.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let day = era * 146_097 + doe - 719_468;
    let day = u64::try_from(day).ok()?;
    (yyyymmdd(day) == id).then_some(day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn partition_ids_match_clickhouse() {
        assert_eq!(yyyymmdd(0), 19_700_101);
        // 2026-11-24T12:00:00Z
        assert_eq!(yyyymmdd(day_of(1_795_521_600)), 20_261_124);
        assert_eq!(yyyymmdd(day_of(951_782_400)), 20_000_229);
        assert_eq!(day_from_yyyymmdd(20_000_229), Some(day_of(951_782_400)));
        assert_eq!(day_from_yyyymmdd(20_010_229), None);
        assert_eq!(day_from_yyyymmdd(12_345), None);
    }

    #[test]
    fn a_day_is_kept_until_all_of_it_is_past_retention() {
        let now = 1_795_521_600; // noon
        let first = first_kept_day(now, 90);
        // The day 90 days before today still has hours within 90 days of now.
        assert_eq!(first, day_of(now) - 90);
        assert_eq!(first_kept_day(10, 90), 0);
        assert!(day_of(now - 90 * DAY_SECS) >= first);
        assert!(day_of(now - 91 * DAY_SECS) < first);
    }

    #[test]
    fn every_table_has_a_name_and_a_retention() {
        let cfg = RetentionConfig::default();
        for t in Table::ALL {
            assert_eq!(Table::from_name(t.name()), Some(t));
            assert_eq!(Table::ALL[t.index()], t);
            assert!(t.retention_days(&cfg) >= 90);
        }
        assert_eq!(Table::SecurityEvent.retention_days(&cfg), 180);
    }

    proptest! {
        #[test]
        fn partition_ids_round_trip(day in 0u64..2_900_000) {
            prop_assert_eq!(day_from_yyyymmdd(yyyymmdd(day)), Some(day));
        }
    }
}
