//! The sink's routing: each decoded event becomes its table's row (the mapping lives in
//! `model::rows`), unless its time is past the table's retention (skipped and counted), it
//! is about a person erased after it happened (dropped and counted: see `erased`), or it is
//! more than a day ahead of the sink's clock (dead-lettered: it would make a partition that
//! retention cannot drop).

use super::batch::{recycle, Decoded, Reject};
use super::erased::Erased;
use crate::config::RetentionConfig;
use crate::model::rows::{AccountRow, CallRow, InboundRow, OptOutRow, SecurityRow, StatusRow};
use crate::model::tables::{day_of, first_kept_day, Table};
use crate::model::Event;

/// Rows later than this past the sink's clock are refused: they would create partitions
/// that retention cannot drop until their time comes.
const MAX_FUTURE_SECS: u64 = 86_400;

/// Rows of one batch, each with the index of the batch line it came from (`Batch::line`).
#[derive(Debug, Default)]
pub struct Rows<'a> {
    pub status: Vec<(usize, StatusRow<'a>)>,
    pub inbound: Vec<(usize, InboundRow<'a>)>,
    pub account: Vec<(usize, AccountRow<'a>)>,
    pub security: Vec<(usize, SecurityRow<'a>)>,
    pub calls: Vec<(usize, CallRow<'a>)>,
    pub opt_outs: Vec<(usize, OptOutRow<'a>)>,
    /// Rows not written because they are already past their table's retention.
    pub expired: Vec<(Table, usize)>,
    /// Lines not written because their person was erased after the event.
    pub erased: Vec<usize>,
    pub rejects: Vec<Reject>,
}

/// What the sink accepts by event time: not past retention, not from the future.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub now_secs: u64,
    pub first_kept_day: [u64; Table::ALL.len()],
}

impl Window {
    pub fn new(now_secs: u64, retention: &RetentionConfig) -> Self {
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
    pub fn route(decoded: &'a Decoded<'_>, window: &Window, erased: &Erased) -> Rows<'a> {
        Rows::route_into(decoded, window, erased, Rows::default())
    }

    /// Empties the rows, keeping their vectors' allocations for the next batch.
    pub fn recycled(self) -> Rows<'static> {
        Rows {
            status: recycle(self.status),
            inbound: recycle(self.inbound),
            account: recycle(self.account),
            security: recycle(self.security),
            calls: recycle(self.calls),
            opt_outs: recycle(self.opt_outs),
            expired: recycle(self.expired),
            erased: recycle(self.erased),
            rejects: recycle(self.rejects),
        }
    }

    /// [`route`](Self::route), into the vectors of an earlier batch's rows (kept by
    /// [`recycled`](Self::recycled)); whatever they still held is dropped.
    pub fn route_into(
        decoded: &'a Decoded<'_>,
        window: &Window,
        erased: &Erased,
        mut rows: Rows<'a>,
    ) -> Rows<'a> {
        rows.clear();
        rows.rejects.extend_from_slice(&decoded.rejects);
        // Per table: (event time, position in `decoded.events`).
        let mut order: [Vec<(u64, u32)>; Table::ALL.len()] = Default::default();
        for (pos, (line, event)) in decoded.events.iter().enumerate() {
            let table = event.kind.table();
            match window.check(table, event.ts) {
                Verdict::Keep if erased.covers(event) => rows.erased.push(*line),
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
                Verdict::Keep => rows.security.push((*line, SecurityRow::from(event))),
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
        self.calls.clear();
        self.opt_outs.clear();
        self.expired.clear();
        self.erased.clear();
        self.rejects.clear();
    }

    fn push_event(&mut self, line: usize, table: Table, e: &'a Event<'_>) {
        match table {
            Table::MessageStatus => self.status.push((line, StatusRow::from(e))),
            Table::InboundMessage => self.inbound.push((line, InboundRow::from(e))),
            Table::CallEvent => self.calls.push((line, CallRow::from(e))),
            Table::OptOut => self.opt_outs.push((line, OptOutRow::from(e))),
            Table::AccountEvent | Table::SecurityEvent => {
                self.account.push((line, AccountRow::from(e)))
            }
        }
    }

    pub fn len(&self) -> usize {
        self.status.len()
            + self.inbound.len()
            + self.account.len()
            + self.security.len()
            + self.calls.len()
            + self.opt_outs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RetentionConfig;
    use crate::model::{EventId, EventKind, SecurityEvent, EVENT_VERSION};
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
            message_key: Some(crate::privacy::Pseudonym([1; 16])),
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
                    count: 1,
                },
            )],
            rejects: vec![],
        };
        let rows = Rows::route(
            &decoded,
            &Window::new(NOW, &RetentionConfig::default()),
            &Erased::default(),
        );
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
    fn events_of_people_erased_after_them_are_dropped() {
        let pepper = Pepper::new(b"pepper-pepper-pepper");
        let erased = Erased::with(&[(pepper.hash_phone("919876544321"), NOW - 5)]);
        let decoded = Decoded {
            events: vec![(0, status(NOW - 10)), (1, status(NOW))],
            ..Decoded::default()
        };
        let rows = Rows::route(
            &decoded,
            &Window::new(NOW, &RetentionConfig::default()),
            &erased,
        );
        assert_eq!(rows.erased, [0]);
        assert_eq!(rows.status.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [1]);
    }
}
