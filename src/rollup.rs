//! The daily aggregates (`schemas/clickhouse/007_daily_aggregates.sql`): for one raw table and
//! one day, the day's counts recomputed from the raw rows, exactly, and written under a new
//! version. The sink rolls up the days it wrote to (so the aggregates follow the data within
//! `sink.rollup_interval_ms`); erase rolls up the days it removed rows from, so no aggregate
//! still counts an erased person; `bluetick rollup` rebuilds a range.
//!
//! Why recompute rather than add: Meta retries a webhook for days and Kafka redelivers after a
//! crash, so the same status arrives more than once, possibly days apart. A count that adds
//! what arrives would count it twice; distinct-count states (`uniqExactState`) stay exact but
//! cost seconds to merge over 30 days of a large BSP. A day's raw rows counted with
//! `uniqExact` are exact whatever arrived twice, and the result is a few rows per day.
//!
//! Invariant: the latest version of a day's groups is that day's answer. Writes are inserts
//! only (the sink's ClickHouse user can do them); a group that lost all its rows gets zeros.

use crate::clickhouse::{ClickHouse, ClickHouseError};
use crate::model::tables::Table;
use std::collections::BTreeSet;

/// One aggregate table: what it summarises and how.
struct Aggregate {
    name: &'static str,
    source: Table,
    /// Group columns, in the table's order (after `day`).
    groups: &'static [&'static str],
    /// Value columns, in the table's order (before `version`).
    values: &'static [&'static str],
    /// `SELECT` of the day's rows: `day`, the groups, the values, in that order, over rows
    /// with `ts` in [{start}, {end}) — placeholders filled per day.
    select: &'static str,
}

const AGGREGATES: &[Aggregate] = &[
    Aggregate {
        name: "status_daily",
        source: Table::MessageStatus,
        groups: &["tenant", "waba_id", "phone_number_id", "pricing_category", "country_code"],
        values: &["sent", "delivered", "read", "failed", "billable"],
        select: "SELECT toDate(ts) AS day, tenant, waba_id, phone_number_id, pricing_category, \
            country_code, uniqExactIf(message_id, status = 'sent'), \
            uniqExactIf(message_id, status = 'delivered'), uniqExactIf(message_id, status = 'read'), \
            uniqExactIf(message_id, status = 'failed'), \
            uniqExactIf(message_id, status = 'delivered' AND (pricing_type = 'regular' \
            OR (pricing_type = '' AND billable = 1))) \
            FROM message_status WHERE ts >= toDateTime({start}) AND ts < toDateTime({end}) \
            GROUP BY day, tenant, waba_id, phone_number_id, pricing_category, country_code",
    },
    Aggregate {
        name: "failure_daily",
        source: Table::MessageStatus,
        groups: &["tenant", "waba_id", "phone_number_id", "error_code"],
        values: &["error_title", "messages"],
        select: "SELECT toDate(ts) AS day, tenant, waba_id, phone_number_id, error_code, \
            any(error_title), uniqExact(message_id) FROM message_status \
            WHERE status = 'failed' AND ts >= toDateTime({start}) AND ts < toDateTime({end}) \
            GROUP BY day, tenant, waba_id, phone_number_id, error_code",
    },
    Aggregate {
        name: "inbound_daily",
        source: Table::InboundMessage,
        groups: &["tenant", "waba_id", "phone_number_id", "country_code", "message_type", "ad_source_id"],
        values: &["messages"],
        select: "SELECT toDate(ts) AS day, tenant, waba_id, phone_number_id, country_code, \
            message_type, ad_source_id, uniqExact(message_id) FROM inbound_message \
            WHERE ts >= toDateTime({start}) AND ts < toDateTime({end}) \
            GROUP BY day, tenant, waba_id, phone_number_id, country_code, message_type, ad_source_id",
    },
    Aggregate {
        name: "call_daily",
        source: Table::CallEvent,
        groups: &["tenant", "waba_id", "phone_number_id", "country_code", "direction", "status"],
        values: &["calls", "duration_s", "longest_s"],
        // One row per call first (its terminate event may arrive twice), then per group.
        select: "SELECT day, tenant, waba_id, phone_number_id, country_code, direction, status, \
            count(), sum(duration), max(duration) FROM (SELECT call_id, toDate(min(ts)) AS day, \
            any(tenant) AS tenant, any(waba_id) AS waba_id, any(phone_number_id) AS phone_number_id, \
            any(country_code) AS country_code, any(direction) AS direction, any(status) AS status, \
            max(duration_s) AS duration FROM call_event WHERE kind = 'call' \
            AND update_event = 'terminate' AND ts >= toDateTime({start}) \
            AND ts < toDateTime({end}) GROUP BY call_id) \
            GROUP BY day, tenant, waba_id, phone_number_id, country_code, direction, status",
    },
    Aggregate {
        name: "opt_out_daily",
        source: Table::OptOut,
        groups: &["tenant", "waba_id", "phone_number_id", "country_code", "category", "preference"],
        values: &["events"],
        select: "SELECT toDate(ts) AS day, tenant, waba_id, phone_number_id, country_code, \
            category, preference, uniqExact(event_id) FROM opt_out \
            WHERE ts >= toDateTime({start}) AND ts < toDateTime({end}) \
            GROUP BY day, tenant, waba_id, phone_number_id, country_code, category, preference",
    },
];

/// Every aggregate table and the raw table it summarises (its retention is that table's).
pub fn aggregate_tables() -> impl Iterator<Item = (&'static str, Table)> {
    AGGREGATES.iter().map(|a| (a.name, a.source))
}

/// Whether `table` feeds any aggregate.
pub fn feeds_aggregates(table: Table) -> bool {
    AGGREGATES.iter().any(|a| a.source == table)
}

/// Recomputes every aggregate of `table` for `day` (days since the Unix epoch, UTC) under
/// `version` (larger than any earlier rollup's: the caller's clock in milliseconds).
pub async fn day(
    ch: &ClickHouse,
    table: Table,
    day: u64,
    version: u64,
) -> Result<(), ClickHouseError> {
    for sql in statements(table, day, version) {
        ch.execute(&sql).await?;
    }
    Ok(())
}

/// The statements of [`day`], in order: per aggregate of `table`, the day's counts, then
/// zeros for the groups that have no rows any more (their rows were erased), so the latest
/// version of every group is the day's answer.
pub fn statements(table: Table, day: u64, version: u64) -> Vec<String> {
    let (start, end) = (day * 86_400, (day + 1) * 86_400);
    let mut out = Vec::new();
    for a in AGGREGATES.iter().filter(|a| a.source == table) {
        let select = a
            .select
            .replace("{start}", &start.to_string())
            .replace("{end}", &end.to_string());
        let columns: Vec<&str> = std::iter::once("day")
            .chain(a.groups.iter().copied())
            .chain(a.values.iter().copied())
            .collect();
        out.push(format!(
            "INSERT INTO {} ({}, version) SELECT *, toUInt64({version}) FROM ({select})",
            a.name,
            columns.join(", ")
        ));
        out.push(zero_vanished(a, day, version));
    }
    out
}

fn zero_vanished(a: &Aggregate, day: u64, version: u64) -> String {
    let groups = a.groups.join(", ");
    let zeros: Vec<&str> = a
        .values
        .iter()
        .map(|v| if *v == "error_title" { "''" } else { "0" })
        .collect();
    let live: Vec<String> = a
        .values
        .iter()
        .filter(|v| **v != "error_title")
        .map(|v| format!("{v} > 0"))
        .collect();
    let date = format!("toDate(toDateTime({}, 'UTC'))", day * 86_400);
    format!(
        "INSERT INTO {name} (day, {groups}, {values}, version) \
         SELECT day, {groups}, {zeros}, toUInt64({version}) FROM {name} FINAL \
         WHERE day = {date} AND version < {version} AND ({live}) \
         AND ({groups}) NOT IN (SELECT {groups} FROM {name} WHERE day = {date} \
         AND version = {version})",
        name = a.name,
        values = a.values.join(", "),
        zeros = zeros.join(", "),
        live = live.join(" OR "),
    )
}

/// Rolls up every (table, day) in `days` that feeds an aggregate; returns how many it did.
pub async fn days(
    ch: &ClickHouse,
    days: &BTreeSet<(Table, u64)>,
    version: u64,
) -> Result<usize, ClickHouseError> {
    let mut done = 0;
    for (table, d) in days.iter().filter(|(t, _)| feeds_aggregates(*t)) {
        day(ch, *table, *d, version).await?;
        done += 1;
    }
    Ok(done)
}

/// `bluetick rollup`: recounts every aggregate of every day in `[first, last]` (days since the
/// epoch), a line per day on `out`: after upgrading to schema 007 (to fill the aggregates of
/// the days already stored), or with the sinks' rollup turned off.
pub async fn range(
    ch: &ClickHouse,
    first: u64,
    last: u64,
    out: &mut dyn std::io::Write,
) -> Result<usize, RangeError> {
    let tables: BTreeSet<Table> = AGGREGATES.iter().map(|a| a.source).collect();
    let mut done = 0;
    for d in first..=last {
        let started = std::time::Instant::now();
        let version = crate::clock::now_ms();
        for table in &tables {
            day(ch, *table, d, version).await?;
            done += 1;
        }
        writeln!(
            out,
            "  {}: recounted in {} ms",
            crate::model::tables::yyyymmdd(d),
            started.elapsed().as_millis()
        )?;
    }
    Ok(done)
}

#[derive(Debug, thiserror::Error)]
pub enum RangeError {
    #[error(transparent)]
    ClickHouse(#[from] ClickHouseError),
    #[error("writing progress: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_aggregate_lists_its_columns_in_the_order_it_selects_them() {
        for a in AGGREGATES {
            // `day` + groups in the GROUP BY, in order, and as many values as columns.
            let group_by = a.select.rsplit("GROUP BY ").next().unwrap_or("");
            let expected = std::iter::once("day")
                .chain(a.groups.iter().copied())
                .collect::<Vec<_>>()
                .join(", ");
            assert_eq!(group_by.trim(), expected, "{}", a.name);
            assert!(
                a.select.contains("{start}") && a.select.contains("{end}"),
                "{}",
                a.name
            );
        }
        let names: BTreeSet<&str> = aggregate_tables().map(|(n, _)| n).collect();
        assert_eq!(names.len(), AGGREGATES.len());
    }
}
