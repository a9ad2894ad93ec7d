//! The ClickHouse side of the sink: one row type per table, borrowing from decoded events;
//! routing of events to tables; and inserts that tell an outage (retry the batch later) from
//! rows ClickHouse refuses for their content (find them by bisection, dead-letter only them).

use super::batch::{recycle, Decoded, Reject};
use crate::model::{Event, EventId, EventKind, SecurityEvent};
use crate::privacy::PhoneHash;
use crate::tables::{day_of, first_kept_day, Table};
use serde::{Serialize, Serializer};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// ClickHouse's default `max_partitions_per_insert_block`: one INSERT may touch at most this
/// many day partitions, so larger spans are split.
const MAX_PARTITIONS_PER_INSERT: usize = 100;

/// Rows later than this past the sink's clock are refused: they would create partitions
/// that retention cannot drop until their time comes.
const MAX_FUTURE_SECS: u64 = 86_400;

/// Error codes with which ClickHouse says "this data is wrong" rather than "I cannot take it
/// now". Only these lead to bisection and dead-lettering; every other failure is retried, so an
/// unknown error can delay rows but never discard them.
const CONTENT_ERROR_CODES: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    53,  // TYPE_MISMATCH
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    131, // TOO_LARGE_STRING_SIZE
    321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    395, // FUNCTION_THROW_IF_VALUE_IS_NON_ZERO
    469, // VIOLATED_CONSTRAINT
];

#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// Network, timeout, overload, missing table, auth: retry the same rows later.
    #[error("clickhouse unavailable: {0}")]
    Unavailable(String),
    /// ClickHouse refused the data itself.
    #[error("clickhouse rejected the rows: {0}")]
    Rejected(String),
}

impl From<clickhouse::error::Error> for InsertError {
    fn from(e: clickhouse::error::Error) -> Self {
        use clickhouse::error::Error as E;
        match &e {
            E::BadResponse(text) if exception_code(text).is_some_and(is_content_code) => {
                InsertError::Rejected(first_line(text))
            }
            // A row that fails to serialize locally is its own fault.
            E::Custom(_) | E::InvalidUtf8Encoding(_) | E::SequenceMustHaveLength => {
                InsertError::Rejected(e.to_string())
            }
            _ => InsertError::Unavailable(first_line(&e.to_string())),
        }
    }
}

fn is_content_code(code: u32) -> bool {
    CONTENT_ERROR_CODES.contains(&code)
}

/// The `N` of `Code: N` in a ClickHouse exception text.
fn exception_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + 6..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(500)
        .collect()
}

/// A string column that is empty where the event has no value.
fn s<'a>(v: &'a Option<std::borrow::Cow<'_, str>>) -> &'a str {
    v.as_deref().unwrap_or_default()
}

/// The hash column: hex, or empty for events without a person.
#[derive(Debug, Clone, Copy)]
pub struct HashCol(Option<PhoneHash>);

impl Serialize for HashCol {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(h) => h.serialize(ser),
            None => ser.serialize_str(""),
        }
    }
}

#[derive(Debug, clickhouse::Row, Serialize)]
pub struct StatusRow<'a> {
    pub event_id: EventId,
    pub ts: u32,
    pub received_ms: u64,
    pub waba_id: &'a str,
    pub phone_number_id: &'a str,
    pub display_phone_number: &'a str,
    pub message_id: &'a str,
    pub status: &'a str,
    pub person_masked: &'a str,
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
}

#[derive(Debug, clickhouse::Row, Serialize)]
pub struct InboundRow<'a> {
    pub event_id: EventId,
    pub ts: u32,
    pub received_ms: u64,
    pub waba_id: &'a str,
    pub phone_number_id: &'a str,
    pub message_id: &'a str,
    pub message_type: &'a str,
    pub person_masked: &'a str,
    pub person_hash: HashCol,
    pub context_message_id: &'a str,
    pub forwarded: u8,
    pub from_ad: u8,
    pub error_code: i32,
    pub error_title: &'a str,
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
}

#[derive(Debug, clickhouse::Row, Serialize)]
pub struct SecurityRow<'a> {
    pub ts: u32,
    pub received_ms: u64,
    pub source_ip: &'a str,
    pub reason: &'a str,
    pub route: &'a str,
}

/// A row type of one table. `Owned` names the same struct for the `clickhouse` crate's
/// `insert::<T>()`; `as_value` hands it the borrowed row as is.
pub trait TableRow<'a>: Serialize + Send + Sync {
    type Owned: clickhouse::RowWrite;
    fn as_value(&self) -> &<Self::Owned as clickhouse::Row>::Value<'a>;
    fn ts(&self) -> u32;
    fn received_ms(&self) -> u64;
}

macro_rules! table_row {
    ($($row:ident),*) => {$(
        impl<'a> TableRow<'a> for $row<'a> {
            type Owned = $row<'static>;
            fn as_value(&self) -> &$row<'a> {
                self
            }
            fn ts(&self) -> u32 {
                self.ts
            }
            fn received_ms(&self) -> u64 {
                self.received_ms
            }
        }
    )*};
}
table_row!(StatusRow, InboundRow, AccountRow, SecurityRow);

/// Rows of one batch, each with the index of the batch line it came from (`Batch::line`).
#[derive(Debug, Default)]
pub struct Rows<'a> {
    pub status: Vec<(usize, StatusRow<'a>)>,
    pub inbound: Vec<(usize, InboundRow<'a>)>,
    pub account: Vec<(usize, AccountRow<'a>)>,
    pub security: Vec<(usize, SecurityRow<'a>)>,
    /// Rows not written because they are already past their table's retention.
    pub expired: Vec<(Table, usize)>,
    pub rejects: Vec<Reject>,
}

/// What the sink accepts by event time: not past retention, not from the future.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub now_secs: u64,
    pub first_kept_day: [u64; 4],
}

impl Window {
    pub fn new(now_secs: u64, retention: &crate::config::RetentionConfig) -> Self {
        Window {
            now_secs,
            first_kept_day: Table::ALL
                .map(|t| first_kept_day(now_secs, t.retention_days(retention))),
        }
    }

    fn check(&self, table: Table, ts: u64) -> Verdict {
        if ts > self.now_secs + MAX_FUTURE_SECS {
            return Verdict::Reject(format!(
                "event time {ts} is more than a day after the sink's clock ({})",
                self.now_secs
            ));
        }
        if day_of(ts) < self.first_kept_day[table.index()] {
            return Verdict::Expired;
        }
        Verdict::Keep
    }
}

enum Verdict {
    Keep,
    Expired,
    Reject(String),
}

impl<'a> Rows<'a> {
    /// Routes each decoded line to its table, sorted by event time so that an INSERT
    /// touches few partitions. Small (ts, position) keys are sorted, not the rows: moving
    /// whole rows around in a sort was the sink's largest cost.
    pub fn route(decoded: &'a Decoded<'_>, window: &Window) -> Rows<'a> {
        Rows::route_into(decoded, window, Rows::default())
    }

    /// Empties the rows, keeping their vectors' allocations for the next batch.
    pub fn recycled(self) -> Rows<'static> {
        Rows {
            status: recycle(self.status),
            inbound: recycle(self.inbound),
            account: recycle(self.account),
            security: recycle(self.security),
            expired: recycle(self.expired),
            rejects: recycle(self.rejects),
        }
    }

    /// [`route`](Self::route), into the vectors of an earlier batch's rows (kept by
    /// [`recycled`](Self::recycled)); whatever they still held is dropped.
    pub fn route_into(decoded: &'a Decoded<'_>, window: &Window, mut rows: Rows<'a>) -> Rows<'a> {
        rows.clear();
        rows.rejects.extend_from_slice(&decoded.rejects);
        // Per table: (event time, position in `decoded.events`).
        let mut order: [Vec<(u64, u32)>; 4] = Default::default();
        for (pos, (line, event)) in decoded.events.iter().enumerate() {
            let table = table_of(event.kind);
            match window.check(table, event.ts) {
                Verdict::Keep => order[table.index()].push((event.ts, pos as u32)),
                Verdict::Expired => rows.expired.push((table, *line)),
                Verdict::Reject(reason) => rows.rejects.push(Reject {
                    line: *line,
                    reason,
                }),
            }
        }
        rows.status
            .reserve(order[Table::MessageStatus.index()].len());
        rows.inbound
            .reserve(order[Table::InboundMessage.index()].len());
        rows.account
            .reserve(order[Table::AccountEvent.index()].len());
        for (table, keys) in Table::ALL.into_iter().zip(order.iter_mut()) {
            keys.sort_unstable();
            for &(_, pos) in keys.iter() {
                let (line, event) = &decoded.events[pos as usize];
                rows.push_event(*line, table, event);
            }
        }
        for (line, event) in &decoded.security {
            let ts = event.received_ms / 1000;
            match window.check(Table::SecurityEvent, ts) {
                Verdict::Keep => rows.security.push((*line, security_row(ts as u32, event))),
                Verdict::Expired => rows.expired.push((Table::SecurityEvent, *line)),
                Verdict::Reject(reason) => rows.rejects.push(Reject {
                    line: *line,
                    reason,
                }),
            }
        }
        // Security events arrive in time order already (their time is the receipt time).
        rows.security.sort_by_key(|(_, r)| r.ts);
        rows
    }

    fn clear(&mut self) {
        self.status.clear();
        self.inbound.clear();
        self.account.clear();
        self.security.clear();
        self.expired.clear();
        self.rejects.clear();
    }

    fn push_event(&mut self, line: usize, table: Table, e: &'a Event<'_>) {
        // `Window::check` bounded ts to a day past now, far inside u32.
        let ts = e.ts as u32;
        let error_code = e
            .error_code
            .map_or(0, |c| i32::try_from(c).unwrap_or(i32::MIN));
        let masked = e.person_masked.as_ref().map_or("", |m| m.as_str());
        match table {
            Table::MessageStatus => self.status.push((
                line,
                StatusRow {
                    event_id: e.id,
                    ts,
                    received_ms: e.received_ms,
                    waba_id: &e.waba_id,
                    phone_number_id: s(&e.phone_number_id),
                    display_phone_number: s(&e.display_phone_number),
                    message_id: s(&e.message_id),
                    status: s(&e.status),
                    person_masked: masked,
                    person_hash: HashCol(e.person_hash),
                    conversation_id: s(&e.conversation_id),
                    conversation_origin: s(&e.conversation_origin),
                    conversation_expiration_ts: e
                        .conversation_expiration_ts
                        .map_or(0, |t| u32::try_from(t).unwrap_or(u32::MAX)),
                    pricing_model: s(&e.pricing_model),
                    pricing_category: s(&e.pricing_category),
                    pricing_type: s(&e.pricing_type),
                    billable: u8::from(e.billable.unwrap_or(false)),
                    error_code,
                    error_title: s(&e.error_title),
                },
            )),
            Table::InboundMessage => self.inbound.push((
                line,
                InboundRow {
                    event_id: e.id,
                    ts,
                    received_ms: e.received_ms,
                    waba_id: &e.waba_id,
                    phone_number_id: s(&e.phone_number_id),
                    message_id: s(&e.message_id),
                    message_type: s(&e.message_type),
                    person_masked: masked,
                    person_hash: HashCol(e.person_hash),
                    context_message_id: s(&e.context_message_id),
                    forwarded: u8::from(e.forwarded.unwrap_or(false)),
                    from_ad: u8::from(e.from_ad.unwrap_or(false)),
                    error_code,
                    error_title: s(&e.error_title),
                },
            )),
            Table::AccountEvent | Table::SecurityEvent => self.account.push((
                line,
                AccountRow {
                    event_id: e.id,
                    ts,
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
                    error_code,
                    error_title: s(&e.error_title),
                },
            )),
        }
    }

    pub fn len(&self) -> usize {
        self.status.len() + self.inbound.len() + self.account.len() + self.security.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn table_of(kind: EventKind) -> Table {
    match kind {
        EventKind::Status => Table::MessageStatus,
        EventKind::Message => Table::InboundMessage,
        _ => Table::AccountEvent,
    }
}

fn security_row<'a>(ts: u32, e: &'a SecurityEvent<'_>) -> SecurityRow<'a> {
    SecurityRow {
        ts,
        received_ms: e.received_ms,
        source_ip: &e.source_ip,
        reason: &e.reason,
        route: &e.route,
    }
}

/// Writes rows with RowBinary inserts.
#[derive(Clone)]
pub struct Writer {
    client: clickhouse::Client,
    timeout: Duration,
}

impl Writer {
    pub fn new(client: clickhouse::Client, timeout: Duration) -> Self {
        Writer { client, timeout }
    }

    /// Inserts `rows` (sorted by time) into `table`, at most [`MAX_PARTITIONS_PER_INSERT`]
    /// days per INSERT. Rows ClickHouse refuses for their content are isolated by bisection
    /// and returned; everything else is in the table when this returns `Ok`.
    ///
    /// Boxed so that callers' futures are `Send` without naming the row lifetime (rustc
    /// cannot yet prove that through the generic `TableRow<'a>`).
    pub fn write<'s, 'a: 's, R: TableRow<'a>>(
        &'s self,
        table: Table,
        rows: &'s [(usize, R)],
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Reject>, InsertError>> + Send + 's>> {
        Box::pin(async move {
            let mut rejects = Vec::new();
            for chunk in partition_chunks(rows) {
                self.write_bisecting(table, chunk, &mut rejects).await?;
            }
            Ok(rejects)
        })
    }

    async fn write_bisecting<'a, R: TableRow<'a>>(
        &self,
        table: Table,
        rows: &[(usize, R)],
        rejects: &mut Vec<Reject>,
    ) -> Result<(), InsertError> {
        let mut todo = Vec::with_capacity(32);
        todo.push(0..rows.len());
        while let Some(range) = todo.pop() {
            match self.insert(table, &rows[range.clone()]).await {
                Ok(()) => {}
                Err(InsertError::Rejected(reason)) if range.len() == 1 => rejects.push(Reject {
                    line: rows[range.start].0,
                    reason,
                }),
                Err(InsertError::Rejected(_)) => {
                    let mid = range.start + range.len() / 2;
                    todo.push(mid..range.end);
                    todo.push(range.start..mid);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn insert<'a, R: TableRow<'a>>(
        &self,
        table: Table,
        rows: &[(usize, R)],
    ) -> Result<(), InsertError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self
            .client
            .insert::<R::Owned>(table.name())
            .await?
            .with_timeouts(Some(self.timeout), Some(self.timeout));
        for (_, row) in rows {
            insert.write(row.as_value()).await?;
        }
        Ok(insert.end().await?)
    }
}

/// Splits time-sorted rows so that no chunk spans more than [`MAX_PARTITIONS_PER_INSERT`] days.
fn partition_chunks<'r, 'a, R: TableRow<'a>>(rows: &'r [(usize, R)]) -> Vec<&'r [(usize, R)]> {
    let mut chunks = Vec::new();
    let (mut start, mut days, mut last_day) = (0, 0, None);
    for (i, (_, row)) in rows.iter().enumerate() {
        let day = day_of(u64::from(row.ts()));
        if last_day != Some(day) {
            if days == MAX_PARTITIONS_PER_INSERT {
                chunks.push(&rows[start..i]);
                start = i;
                days = 0;
            }
            days += 1;
            last_day = Some(day);
        }
    }
    if start < rows.len() {
        chunks.push(&rows[start..]);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RetentionConfig;
    use crate::model::EVENT_VERSION;
    use crate::privacy::{Pepper, Person};

    const NOW: u64 = 1_795_521_600;

    fn status(ts: u64) -> Event<'static> {
        let person = Person::protect(&Pepper::new(b"pepper-pepper-pepper"), "919876544321");
        Event {
            v: EVENT_VERSION,
            id: EventId(ts as u128),
            kind: EventKind::Status,
            ts,
            received_ms: NOW * 1000,
            waba_id: "w".into(),
            field: "messages".into(),
            message_id: Some("wamid.1".into()),
            status: Some("read".into()),
            person_masked: Some(person.masked),
            person_hash: Some(person.hash),
            billable: Some(true),
            error_code: Some(1 << 40),
            ..Event::default()
        }
    }

    #[test]
    fn events_route_by_kind_and_time() {
        let mut update = status(NOW);
        update.kind = EventKind::TemplateStatus;
        let mut inbound = status(NOW - 5);
        inbound.kind = EventKind::Message;
        let decoded = Decoded {
            events: vec![
                (0, status(NOW)),
                (1, status(NOW - 10)),
                (2, status(NOW - 91 * 86_400)),
                (3, status(NOW + 2 * 86_400)),
                (4, update),
                (5, inbound),
            ],
            security: vec![(
                6,
                SecurityEvent {
                    v: 1,
                    received_ms: NOW * 1000,
                    source_ip: "10.0.0.1".into(),
                    reason: "bad_signature".into(),
                    route: "webhook".into(),
                },
            )],
            rejects: vec![],
        };
        let rows = Rows::route(&decoded, &Window::new(NOW, &RetentionConfig::default()));
        let order: Vec<usize> = rows.status.iter().map(|(i, _)| *i).collect();
        assert_eq!(order, [1, 0], "sorted by time");
        assert_eq!(rows.status[0].1.person_masked, "91XXXXXX4321");
        assert_eq!(rows.status[0].1.billable, 1);
        assert_eq!(
            rows.status[0].1.error_code,
            i32::MIN,
            "out of range is visible"
        );
        assert_eq!(rows.expired, [(Table::MessageStatus, 2)]);
        assert_eq!(rows.rejects.len(), 1);
        assert_eq!(rows.rejects[0].line, 3);
        assert_eq!(rows.account.len(), 1);
        assert_eq!(rows.account[0].1.kind, "template_status");
        assert_eq!(rows.inbound.len(), 1);
        assert_eq!(rows.security[0].1.ts, NOW as u32);
        assert_eq!(rows.len(), 5);
    }

    #[test]
    fn inserts_never_span_more_than_the_partition_limit() {
        let events: Vec<Event> = (0..250u64).map(|d| status(NOW - d * 86_400 / 2)).collect();
        let decoded = Decoded {
            events: events.into_iter().enumerate().collect(),
            ..Decoded::default()
        };
        let retention = RetentionConfig {
            message_status_days: 1000,
            ..RetentionConfig::default()
        };
        let rows = Rows::route(&decoded, &Window::new(NOW, &retention));
        let chunks = partition_chunks(&rows.status);
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), 250);
        for c in &chunks {
            let mut days: Vec<u64> = c.iter().map(|(_, r)| day_of(u64::from(r.ts))).collect();
            days.dedup();
            assert!(days.len() <= MAX_PARTITIONS_PER_INSERT, "{}", days.len());
        }
        assert_eq!(chunks.len(), 2);
    }

    #[test]
    fn content_errors_are_told_from_outages() {
        use clickhouse::error::Error as E;
        let content = E::BadResponse(
            "Code: 395. DB::Exception: Value passed to 'throwIf' function is non zero".into(),
        );
        assert!(
            matches!(InsertError::from(content), InsertError::Rejected(r) if r.contains("throwIf"))
        );
        let missing = E::BadResponse("Code: 60. DB::Exception: Table x doesn't exist".into());
        assert!(matches!(
            InsertError::from(missing),
            InsertError::Unavailable(_)
        ));
        assert!(matches!(
            InsertError::from(E::TimedOut),
            InsertError::Unavailable(_)
        ));
        assert_eq!(exception_code("Code: 252, e.displayText() = …"), Some(252));
        assert_eq!(exception_code("no code"), None);
    }
}
