//! The ClickHouse rows of the tables in [`super::tables`], one type per table, borrowing from a
//! decoded [`Event`], and the one mapping from an event to its table and row.
//!
//! Invariant: the fields of each row type are the table's columns in `schemas/clickhouse/`
//! order (RowBinary is positional); a row holds nothing its event did not, so the privacy
//! promises of [`Event`] carry over to the tables unchanged.

use super::rowbinary::{self, RowBinaryError};
use super::tables::Table;
use super::{Event, EventId, EventKind, SecurityEvent};
use crate::privacy::{MaskedPhone, PersonHash, Pseudonym};
use serde::{Serialize, Serializer};
use std::borrow::Cow;

impl EventKind {
    /// The table an event of this kind is stored in.
    pub fn table(self) -> Table {
        match self {
            EventKind::Status => Table::MessageStatus,
            EventKind::Message => Table::InboundMessage,
            EventKind::Call | EventKind::CallStatus => Table::CallEvent,
            EventKind::OptOut => Table::OptOut,
            _ => Table::AccountEvent,
        }
    }
}

/// A string column that is empty where the event has no value.
fn s<'a>(v: &'a Option<Cow<'_, str>>) -> &'a str {
    v.as_deref().unwrap_or_default()
}

/// Event times are bounded by the sink (a day past its clock at most) before they become rows,
/// so the cast keeps every real value; anything larger saturates instead of wrapping.
fn secs(ts: u64) -> u32 {
    u32::try_from(ts).unwrap_or(u32::MAX)
}

/// An error code out of `Int32`'s range stays visible as `i32::MIN` rather than wrapping into
/// a plausible code.
fn error_code(e: &Event<'_>) -> i32 {
    e.error_code
        .map_or(0, |c| i32::try_from(c).unwrap_or(i32::MIN))
}

/// The hash column: hex, or empty for events without a person.
///
/// The three column types here hand their ASCII text to the serializer as bytes (RowBinary's
/// `String` is bytes): going through `&str` re-checked UTF-8 of text that is ASCII by
/// construction, ~8 % of the sink's routing in a profile. Serialized only as RowBinary.
#[derive(Debug, Clone, Copy)]
pub struct HashCol(pub Option<PersonHash>);

impl Serialize for HashCol {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(h) => ser.serialize_bytes(&h.to_hex().0),
            None => ser.serialize_bytes(b""),
        }
    }
}

/// An id column holding a pseudonym: hex, or empty where the event has none.
#[derive(Debug, Clone, Copy)]
pub struct KeyCol(pub Option<Pseudonym>);

impl Serialize for KeyCol {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(k) => ser.serialize_bytes(&k.to_hex().0),
            None => ser.serialize_bytes(b""),
        }
    }
}

/// The masked-number column (`91XXXXXX4321`), or empty for events without a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskedCol(pub Option<MaskedPhone>);

impl Serialize for MaskedCol {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_bytes(self.0.as_ref().map_or(&b""[..], MaskedPhone::as_bytes))
    }
}

/// The `message_id` column: since schema 004 it holds the message's pseudonym (ClickHouse
/// 18.16 cannot rename a column, and the name is in the tables' sorting keys).
#[derive(Debug, clickhouse::Row, Serialize)]
pub struct StatusRow<'a> {
    pub event_id: EventId,
    pub ts: u32,
    pub received_ms: u64,
    pub waba_id: &'a str,
    pub phone_number_id: &'a str,
    pub display_phone_number: &'a str,
    pub message_id: KeyCol,
    pub status: &'a str,
    pub person_masked: MaskedCol,
    pub person_hash: HashCol,
    pub conversation_id: &'a str,
    pub conversation_origin: &'a str,
    pub conversation_expiration_ts: u32,
    pub pricing_model: &'a str,
    pub pricing_category: &'a str,
    pub pricing_type: &'a str,
    pub billable: u8,
    pub error_code: i32,
    pub error_title: &'a str,
    pub recipient_type: &'a str,
    pub user_hash: HashCol,
    pub parent_user_hash: HashCol,
    /// Schema 006.
    pub tenant: &'a str,
    pub country_code: &'a str,
}

impl<'a> From<&'a Event<'_>> for StatusRow<'a> {
    fn from(e: &'a Event<'_>) -> Self {
        StatusRow {
            event_id: e.id,
            ts: secs(e.ts),
            received_ms: e.received_ms,
            waba_id: &e.waba_id,
            phone_number_id: s(&e.phone_number_id),
            display_phone_number: s(&e.display_phone_number),
            message_id: KeyCol(e.message_key),
            status: s(&e.status),
            person_masked: MaskedCol(e.person_masked),
            person_hash: HashCol(e.person_hash),
            conversation_id: s(&e.conversation_id),
            conversation_origin: s(&e.conversation_origin),
            conversation_expiration_ts: e.conversation_expiration_ts.map_or(0, secs),
            pricing_model: s(&e.pricing_model),
            pricing_category: s(&e.pricing_category),
            pricing_type: s(&e.pricing_type),
            billable: u8::from(e.billable.unwrap_or(false)),
            error_code: error_code(e),
            error_title: s(&e.error_title),
            recipient_type: s(&e.recipient_type),
            user_hash: HashCol(e.user_hash),
            parent_user_hash: HashCol(e.parent_user_hash),
            tenant: s(&e.tenant),
            country_code: s(&e.country_code),
        }
    }
}

#[derive(Debug, clickhouse::Row, Serialize)]
pub struct InboundRow<'a> {
    pub event_id: EventId,
    pub ts: u32,
    pub received_ms: u64,
    pub waba_id: &'a str,
    pub phone_number_id: &'a str,
    pub message_id: KeyCol,
    pub message_type: &'a str,
    pub person_masked: MaskedCol,
    pub person_hash: HashCol,
    pub context_message_id: KeyCol,
    pub forwarded: u8,
    pub from_ad: u8,
    pub error_code: i32,
    pub error_title: &'a str,
    pub user_hash: HashCol,
    pub parent_user_hash: HashCol,
    /// Schema 006.
    pub tenant: &'a str,
    pub country_code: &'a str,
    pub message_subtype: &'a str,
    pub target_message_id: KeyCol,
    pub group_id: KeyCol,
    pub ad_source_type: &'a str,
    pub ad_source_id: &'a str,
    pub ad_click_id: KeyCol,
}

impl<'a> From<&'a Event<'_>> for InboundRow<'a> {
    fn from(e: &'a Event<'_>) -> Self {
        InboundRow {
            event_id: e.id,
            ts: secs(e.ts),
            received_ms: e.received_ms,
            waba_id: &e.waba_id,
            phone_number_id: s(&e.phone_number_id),
            message_id: KeyCol(e.message_key),
            message_type: s(&e.message_type),
            person_masked: MaskedCol(e.person_masked),
            person_hash: HashCol(e.person_hash),
            context_message_id: KeyCol(e.context_message_key),
            forwarded: u8::from(e.forwarded.unwrap_or(false)),
            from_ad: u8::from(e.from_ad.unwrap_or(false)),
            error_code: error_code(e),
            error_title: s(&e.error_title),
            user_hash: HashCol(e.user_hash),
            parent_user_hash: HashCol(e.parent_user_hash),
            tenant: s(&e.tenant),
            country_code: s(&e.country_code),
            message_subtype: s(&e.message_subtype),
            target_message_id: KeyCol(e.target_message_key),
            group_id: KeyCol(e.group_key),
            ad_source_type: s(&e.ad_source_type),
            ad_source_id: s(&e.ad_source_id),
            ad_click_id: KeyCol(e.ad_click_key),
        }
    }
}

#[derive(Debug, clickhouse::Row, Serialize)]
pub struct AccountRow<'a> {
    pub event_id: EventId,
    pub ts: u32,
    pub received_ms: u64,
    pub kind: &'a str,
    pub field: &'a str,
    pub waba_id: &'a str,
    pub phone_number_id: &'a str,
    pub display_phone_number: &'a str,
    pub template_id: &'a str,
    pub template_name: &'a str,
    pub template_language: &'a str,
    pub update_event: &'a str,
    pub reason: &'a str,
    pub previous_quality: &'a str,
    pub new_quality: &'a str,
    pub current_limit: &'a str,
    pub error_code: i32,
    pub error_title: &'a str,
    /// Schema 006.
    pub tenant: &'a str,
    pub template_category: &'a str,
    pub pause_title: &'a str,
    pub previous_category: &'a str,
    pub new_category: &'a str,
    pub correct_category: &'a str,
    pub alert_type: &'a str,
    pub alert_severity: &'a str,
    pub alert_status: &'a str,
    pub decision: &'a str,
    pub violation_type: &'a str,
    pub ban_state: &'a str,
    pub max_daily_conversations: &'a str,
    pub item_count: u32,
}

impl<'a> From<&'a Event<'_>> for AccountRow<'a> {
    fn from(e: &'a Event<'_>) -> Self {
        AccountRow {
            event_id: e.id,
            ts: secs(e.ts),
            received_ms: e.received_ms,
            kind: e.kind.as_str(),
            field: &e.field,
            waba_id: &e.waba_id,
            phone_number_id: s(&e.phone_number_id),
            display_phone_number: s(&e.display_phone_number),
            template_id: s(&e.template_id),
            template_name: s(&e.template_name),
            template_language: s(&e.template_language),
            update_event: s(&e.update_event),
            reason: s(&e.reason),
            previous_quality: s(&e.previous_quality),
            new_quality: s(&e.new_quality),
            current_limit: s(&e.current_limit),
            error_code: error_code(e),
            error_title: s(&e.error_title),
            tenant: s(&e.tenant),
            template_category: s(&e.template_category),
            pause_title: s(&e.pause_title),
            previous_category: s(&e.previous_category),
            new_category: s(&e.new_category),
            correct_category: s(&e.correct_category),
            alert_type: s(&e.alert_type),
            alert_severity: s(&e.alert_severity),
            alert_status: s(&e.alert_status),
            decision: s(&e.decision),
            violation_type: s(&e.violation_type),
            ban_state: s(&e.ban_state),
            max_daily_conversations: s(&e.max_daily_conversations),
            item_count: e.item_count.unwrap_or(0),
        }
    }
}

/// A call connecting or ending, or a call status (schema 006). `call_id` holds the call id's
/// pseudonym.
#[derive(Debug, clickhouse::Row, Serialize)]
pub struct CallRow<'a> {
    pub event_id: EventId,
    pub ts: u32,
    pub received_ms: u64,
    pub kind: &'a str,
    pub waba_id: &'a str,
    pub phone_number_id: &'a str,
    pub tenant: &'a str,
    pub call_id: KeyCol,
    pub update_event: &'a str,
    pub status: &'a str,
    pub direction: &'a str,
    pub start_ts: u32,
    pub end_ts: u32,
    pub duration_s: u32,
    pub person_masked: MaskedCol,
    pub person_hash: HashCol,
    pub user_hash: HashCol,
    pub country_code: &'a str,
    pub error_code: i32,
    pub error_title: &'a str,
}

impl<'a> From<&'a Event<'_>> for CallRow<'a> {
    fn from(e: &'a Event<'_>) -> Self {
        CallRow {
            event_id: e.id,
            ts: secs(e.ts),
            received_ms: e.received_ms,
            kind: e.kind.as_str(),
            waba_id: &e.waba_id,
            phone_number_id: s(&e.phone_number_id),
            tenant: s(&e.tenant),
            call_id: KeyCol(e.message_key),
            update_event: s(&e.update_event),
            status: s(&e.status),
            direction: s(&e.direction),
            start_ts: e.call_start_ts.map_or(0, secs),
            end_ts: e.call_end_ts.map_or(0, secs),
            duration_s: e.call_duration_s.map_or(0, secs),
            person_masked: MaskedCol(e.person_masked),
            person_hash: HashCol(e.person_hash),
            user_hash: HashCol(e.user_hash),
            country_code: s(&e.country_code),
            error_code: error_code(e),
            error_title: s(&e.error_title),
        }
    }
}

/// A customer stopping or resuming a category of messages (schema 006).
#[derive(Debug, clickhouse::Row, Serialize)]
pub struct OptOutRow<'a> {
    pub event_id: EventId,
    pub ts: u32,
    pub received_ms: u64,
    pub waba_id: &'a str,
    pub phone_number_id: &'a str,
    pub tenant: &'a str,
    pub category: &'a str,
    pub preference: &'a str,
    pub person_masked: MaskedCol,
    pub person_hash: HashCol,
    pub user_hash: HashCol,
    pub country_code: &'a str,
}

impl<'a> From<&'a Event<'_>> for OptOutRow<'a> {
    fn from(e: &'a Event<'_>) -> Self {
        OptOutRow {
            event_id: e.id,
            ts: secs(e.ts),
            received_ms: e.received_ms,
            waba_id: &e.waba_id,
            phone_number_id: s(&e.phone_number_id),
            tenant: s(&e.tenant),
            category: s(&e.preference_category),
            preference: s(&e.preference),
            person_masked: MaskedCol(e.person_masked),
            person_hash: HashCol(e.person_hash),
            user_hash: HashCol(e.user_hash),
            country_code: s(&e.country_code),
        }
    }
}

#[derive(Debug, clickhouse::Row, Serialize)]
pub struct SecurityRow<'a> {
    pub ts: u32,
    pub received_ms: u64,
    pub source_ip: &'a str,
    pub reason: &'a str,
    pub route: &'a str,
    /// Appended by schema 005.
    pub count: u32,
}

impl<'a> From<&'a SecurityEvent<'_>> for SecurityRow<'a> {
    /// A security event's time is its receipt time.
    fn from(e: &'a SecurityEvent<'_>) -> Self {
        SecurityRow {
            ts: secs(e.received_ms / 1000),
            received_ms: e.received_ms,
            source_ip: &e.source_ip,
            reason: &e.reason,
            route: &e.route,
            count: e.count,
        }
    }
}

/// The columns of `table`, in its row type's field order: what an INSERT of RowBinary rows
/// names, since RowBinary is positional.
pub fn columns(table: Table) -> &'static [&'static str] {
    use clickhouse::Row;
    match table {
        Table::MessageStatus => StatusRow::COLUMN_NAMES,
        Table::InboundMessage => InboundRow::COLUMN_NAMES,
        Table::AccountEvent => AccountRow::COLUMN_NAMES,
        Table::SecurityEvent => SecurityRow::COLUMN_NAMES,
        Table::CallEvent => CallRow::COLUMN_NAMES,
        Table::OptOut => OptOutRow::COLUMN_NAMES,
    }
}

/// Appends the row of `e` (in its table, `e.kind.table()`) to `out` as RowBinary.
pub fn encode(e: &Event<'_>, out: &mut Vec<u8>) -> Result<(), RowBinaryError> {
    match e.kind.table() {
        Table::MessageStatus => rowbinary::write(&StatusRow::from(e), out),
        Table::InboundMessage => rowbinary::write(&InboundRow::from(e), out),
        Table::CallEvent => rowbinary::write(&CallRow::from(e), out),
        Table::OptOut => rowbinary::write(&OptOutRow::from(e), out),
        Table::AccountEvent | Table::SecurityEvent => rowbinary::write(&AccountRow::from(e), out),
    }
}

/// Appends the row of a security event to `out` as RowBinary.
pub fn encode_security(e: &SecurityEvent<'_>, out: &mut Vec<u8>) -> Result<(), RowBinaryError> {
    rowbinary::write(&SecurityRow::from(e), out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::{Pepper, Person};

    fn status() -> Event<'static> {
        let person = Person::protect(&Pepper::new(b"pepper-pepper-pepper"), "919876544321");
        Event {
            v: 1,
            id: EventId(9),
            kind: EventKind::Status,
            ts: 1_795_521_600,
            waba_id: "w".into(),
            field: "messages".into(),
            message_key: Some(Pseudonym([0xab; 16])),
            status: Some("read".into()),
            person_masked: Some(person.masked),
            person_hash: Some(person.hash),
            billable: Some(true),
            error_code: Some(1 << 40),
            ..Event::default()
        }
    }

    #[test]
    fn kinds_map_to_their_tables() {
        assert_eq!(EventKind::Status.table(), Table::MessageStatus);
        assert_eq!(EventKind::Message.table(), Table::InboundMessage);
        for k in EventKind::ALL {
            assert_ne!(k.table(), Table::SecurityEvent, "{k:?}");
        }
    }

    #[test]
    fn rows_copy_their_event_and_mark_what_does_not_fit() {
        let e = status();
        let row = StatusRow::from(&e);
        let masked = row.person_masked.0.map(|m| m.to_string());
        assert_eq!(masked.as_deref(), Some("91XXXXXX4321"));
        assert_eq!(row.billable, 1);
        assert_eq!(row.error_code, i32::MIN, "out of range is visible");
        assert_eq!((row.ts, row.status), (1_795_521_600, "read"));
        // RowBinary: the hex text with its length, as a `String` column reads it.
        let mut hex = Vec::new();
        rowbinary::write(&row.message_id, &mut hex).expect("encodes");
        assert_eq!(hex, [&[32][..], "ab".repeat(16).as_bytes()].concat());
        let mut none = Vec::new();
        rowbinary::write(&KeyCol(None), &mut none).expect("encodes");
        rowbinary::write(&HashCol(None), &mut none).expect("encodes");
        rowbinary::write(&MaskedCol(None), &mut none).expect("encodes");
        assert_eq!(none, [0, 0, 0], "absent values are empty strings");
        let account = AccountRow::from(&e);
        assert_eq!(account.kind, "status");
        assert_eq!(account.template_id, "");
    }
}
