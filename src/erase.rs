//! `bluetick erase`: deletes every row held about one or more people, found under every
//! identifier Meta gave for them, proves none is left, and records that it did.
//!
//! Steps: find the tables that hold people ([`ClickHouse::people_tables`], from the live
//! schema) and every identifier linked to the ones given; write one `erasure_audit` row per
//! identifier (outcome `requested`) — from then on the sink drops that person's older events,
//! whatever it reads; per table count the rows, `ALTER TABLE … DELETE` them (a mutation whose
//! list is a subquery on those audit rows, so lists of any length work), wait for ClickHouse,
//! count again; wait a little for rows a sink had in hand, and delete again if any came;
//! then one audit row per identifier (outcome `erased`). Running it again is harmless.

use crate::clickhouse::{quote_ident, quote_literal, ClickHouse, ClickHouseError, PeopleTable};
use crate::clock::now_secs;
use crate::config::Config;
use crate::model::tables::{Table, ERASURE_AUDIT};
use crate::privacy::PersonHash;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error(transparent)]
    ClickHouse(#[from] ClickHouseError),
    #[error(
        "erasure incomplete: {remaining} rows remain in {table} (rows written while it ran? \
         run it again){done}"
    )]
    Remaining {
        table: String,
        remaining: u64,
        done: String,
    },
    #[error("erasure of {table} did not finish within {secs} s; it goes on in ClickHouse (system.mutations): run the same command again to verify{done}")]
    Timeout {
        table: String,
        secs: u64,
        done: String,
    },
    #[error("writing progress: {0}")]
    Io(#[from] std::io::Error),
}

/// How long to wait for ClickHouse, and for sinks.
#[derive(Debug, Clone, Copy)]
pub struct Waits {
    /// Per table, for the delete mutation to finish.
    pub mutation: Duration,
    /// After the deletes, before counting once more: a sink that routed a batch before the
    /// audit rows existed may still insert it. A little over `sink.batch_max_age_ms` plus
    /// one insert is enough.
    pub settle: Duration,
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub request_id: String,
    /// Every identifier erased: the ones given and the ones linked to them.
    pub identifiers: Vec<PersonHash>,
    /// Rows removed per table.
    pub removed: BTreeMap<String, u64>,
    /// Rows removed per identifier (hex hash); a row carrying two counts for both.
    pub per_person: BTreeMap<String, u64>,
}

/// Erases every row of the people in `hashes`.
pub async fn run(
    cfg: &Config,
    hashes: &[PersonHash],
    waits: Waits,
    out: &mut dyn Write,
) -> Result<Report, EraseError> {
    let ch = ClickHouse::new(&cfg.clickhouse)?;
    let requested_at = now_secs();
    let request_id = request_id(hashes, requested_at);
    let tables = ch.people_tables().await?;
    let identifiers = ch.linked_identifiers(&tables, hashes).await?;
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    writeln!(
        out,
        "erasure {request_id}: {} person(s), {} identifier(s) with linked ones, tables {}",
        hashes.len(),
        identifiers.len(),
        names.join(", ")
    )?;
    let request = Request {
        ch: &ch,
        id: &request_id,
    };
    request
        .audit(
            &identifiers,
            &BTreeMap::new(),
            &names,
            requested_at,
            "requested",
        )
        .await?;
    let mut days = request.days(&tables).await?;
    let mut report = Report {
        request_id: request_id.clone(),
        identifiers: identifiers.clone(),
        removed: BTreeMap::new(),
        per_person: identifiers.iter().map(|h| (h.to_string(), 0)).collect(),
    };
    for table in &tables {
        let done = summary(&report.removed);
        let rows = request.erase_table(table, waits, out, &done).await?;
        report
            .removed
            .insert(table.name.clone(), rows.values().sum());
        for (hash, n) in rows {
            *report.per_person.entry(hash).or_default() += n;
        }
    }
    tokio::time::sleep(waits.settle).await;
    for table in &tables {
        let late = request.count(table).await?;
        if late > 0 {
            days.extend(request.days(std::slice::from_ref(table)).await?);
            writeln!(
                out,
                "  {}: {late} rows arrived while erasing; erasing again",
                table.name
            )?;
            let done = summary(&report.removed);
            let rows = request.erase_table(table, waits, out, &done).await?;
            *report.removed.entry(table.name.clone()).or_default() += rows.values().sum::<u64>();
        }
    }
    // The daily aggregates counted these rows: recount the days they were on.
    let version = crate::clock::now_ms();
    let recounted = crate::rollup::days(&ch, &days, version).await?;
    if recounted > 0 {
        writeln!(
            out,
            "  daily aggregates recounted for {recounted} table days"
        )?;
    }
    request
        .audit(
            &identifiers,
            &report.per_person,
            &names,
            requested_at,
            "erased",
        )
        .await?;
    let total: u64 = report.removed.values().sum();
    writeln!(
        out,
        "erasure {request_id}: {total} rows removed, 0 remain; audit rows written to {ERASURE_AUDIT}"
    )?;
    Ok(report)
}

/// One erasure request: its audit rows are the list every query selects from.
struct Request<'a> {
    ch: &'a ClickHouse,
    id: &'a str,
}

impl Request<'_> {
    /// The days (since the epoch) each table that feeds the daily aggregates has rows of
    /// these people on: the aggregates to recount once they are gone.
    async fn days(
        &self,
        tables: &[PeopleTable],
    ) -> Result<std::collections::BTreeSet<(Table, u64)>, ClickHouseError> {
        let mut out = std::collections::BTreeSet::new();
        for t in tables {
            let Some(table) =
                Table::from_name(&t.name).filter(|t| crate::rollup::feeds_aggregates(*t))
            else {
                continue;
            };
            let sql = format!(
                "SELECT DISTINCT toUInt64(intDiv(toUInt32(ts), 86400)) FROM {} WHERE {}",
                quote_ident(&t.name),
                t.any_of(&self.set())
            );
            let days: Vec<u64> = self
                .ch
                .client()
                .query(&sql)
                .fetch_all()
                .await
                .map_err(|e| self.ch.error(e))?;
            out.extend(days.into_iter().map(|d| (table, d)));
        }
        Ok(out)
    }

    /// The identifiers of this request, as a subquery. Qualified: on a cluster it also runs
    /// on the other servers, in their own default database.
    fn set(&self) -> String {
        format!(
            "SELECT person_hash FROM {} WHERE request_id = {}",
            self.ch.table(ERASURE_AUDIT),
            quote_literal(self.id)
        )
    }

    async fn count(&self, table: &PeopleTable) -> Result<u64, ClickHouseError> {
        self.count_in(table, &quote_ident(&table.name)).await
    }

    /// The request's rows of `table` read from `source` (the table, or every copy of it).
    async fn count_in(&self, table: &PeopleTable, source: &str) -> Result<u64, ClickHouseError> {
        let sql = format!(
            "SELECT count() FROM {source} WHERE {}",
            table.any_of(&self.set())
        );
        self.ch
            .client()
            .query(&sql)
            .fetch_one()
            .await
            .map_err(|e| self.ch.error(e))
    }

    /// Rows of `table` per identifier of this request (a row counts once per identifier it
    /// carries).
    async fn per_identifier(
        &self,
        table: &PeopleTable,
    ) -> Result<BTreeMap<String, u64>, ClickHouseError> {
        let sql = format!(
            "SELECT h, count() FROM (SELECT arrayJoin([{}]) AS h FROM {} WHERE {}) \
             WHERE h IN ({}) GROUP BY h",
            table.columns.join(", "),
            quote_ident(&table.name),
            table.any_of(&self.set()),
            self.set()
        );
        let rows: Vec<(String, u64)> = self.ch.fetch_all(&sql).await?;
        Ok(rows.into_iter().collect())
    }

    /// Counts, deletes, waits and verifies one table; returns the rows removed per identifier.
    async fn erase_table(
        &self,
        table: &PeopleTable,
        waits: Waits,
        out: &mut dyn Write,
        done: &str,
    ) -> Result<BTreeMap<String, u64>, EraseError> {
        let name = &table.name;
        let before = self.count(table).await?;
        let per_identifier = self.per_identifier(table).await?;
        write!(out, "  {name}: {before} rows")?;
        out.flush()?;
        if before > 0 {
            let sql = format!(
                "ALTER TABLE {} DELETE WHERE {}",
                self.ch.alter_target(name),
                table.any_of(&self.set())
            );
            self.ch.execute(&sql).await?;
            if !self.ch.wait_for_mutations(name, waits.mutation).await? {
                writeln!(out, " … still deleting")?;
                return Err(EraseError::Timeout {
                    table: name.clone(),
                    secs: waits.mutation.as_secs(),
                    done: done.to_string(),
                });
            }
        }
        // On a cluster: on every replica of every shard, not only the ones a read would ask.
        let after = self
            .count_in(table, &self.ch.every_copy(name).await?)
            .await?;
        if after > 0 {
            writeln!(out, " … {after} remain")?;
            return Err(EraseError::Remaining {
                table: name.clone(),
                remaining: after,
                done: done.to_string(),
            });
        }
        writeln!(out, " erased, 0 remain")?;
        Ok(per_identifier)
    }

    /// One audit row per identifier. Rows of outcome `requested` are written before anything
    /// is deleted: they are the request's list and, for the sink, the erasure itself.
    async fn audit(
        &self,
        identifiers: &[PersonHash],
        removed: &BTreeMap<String, u64>,
        tables: &[&str],
        requested_at: u64,
        outcome: &str,
    ) -> Result<(), ClickHouseError> {
        let tables = tables.join(",");
        let finished_at = now_secs() as u32;
        let err = |e| self.ch.error(e);
        let mut insert = self
            .ch
            .client()
            .insert::<AuditRow<'static>>(ERASURE_AUDIT)
            .await
            .map_err(err)?;
        for hash in identifiers {
            let hex = hash.to_hex();
            insert
                .write(&AuditRow {
                    request_id: self.id,
                    person_hash: hex.as_str(),
                    tables: &tables,
                    rows_removed: removed.get(hex.as_str()).copied().unwrap_or(0),
                    rows_remaining: 0,
                    requested_at: requested_at as u32,
                    finished_at,
                    outcome,
                    identifier: "hash",
                })
                .await
                .map_err(err)?;
        }
        insert.end().await.map_err(err)
    }
}

#[derive(Debug, serde::Serialize, clickhouse::Row)]
struct AuditRow<'a> {
    request_id: &'a str,
    person_hash: &'a str,
    tables: &'a str,
    rows_removed: u64,
    rows_remaining: u64,
    requested_at: u32,
    finished_at: u32,
    outcome: &'a str,
    /// What kind of identifier `person_hash` is; erase knows identifiers by hash only.
    identifier: &'a str,
}

/// A request id that is unique per run and says when it ran:
/// `er-2026-11-30T22:15:30Z-<13 letters>`. Letters, not hex, after the time: no run of
/// digits that a privacy scan could mistake for a phone number.
fn request_id(hashes: &[PersonHash], at: u64) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&at.to_be_bytes());
    h.update(&std::process::id().to_be_bytes());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    h.update(&nanos.to_be_bytes());
    for hash in hashes {
        h.update(&hash.0);
    }
    let mut suffix = String::with_capacity(13);
    let mut bits = h.digest();
    for _ in 0..13 {
        suffix.push(char::from(b'a' + (bits % 26) as u8));
        bits /= 26;
    }
    let day = crate::model::tables::yyyymmdd(at / 86_400);
    let secs = at % 86_400;
    format!(
        "er-{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z-{suffix}",
        day / 10_000,
        day / 100 % 100,
        day % 100,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn summary(removed: &BTreeMap<String, u64>) -> String {
    if removed.is_empty() {
        return "; no table was erased yet".into();
    }
    let done: Vec<String> = removed
        .iter()
        .map(|(t, n)| format!("{t} ({n} rows)"))
        .collect();
    format!("; already erased: {}", done.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_differ_per_run_and_name_the_time() {
        let a = request_id(&[], 1_795_521_600);
        let b = request_id(&[], 1_795_521_600);
        assert!(a.starts_with("er-2026-11-24T12:00:00Z-"), "{a}");
        assert_ne!(a, b);
        assert_eq!(crate::privacy::detect::scan(&a), None, "{a}");
    }

    #[test]
    fn the_list_is_a_subquery_on_the_requests_audit_rows() {
        let table = PeopleTable {
            name: "message_status".into(),
            engine: "ReplacingMergeTree".into(),
            columns: vec!["person_hash", "user_hash"],
        };
        let cfg = crate::config::ClickHouseConfig::default();
        let ch = ClickHouse::new(&cfg).expect("client");
        let request = Request {
            ch: &ch,
            id: "er-1-x",
        };
        let sql = table.any_of(&request.set());
        assert_eq!(
            sql,
            "(person_hash IN (SELECT person_hash FROM `bluetick`.`erasure_audit` WHERE \
             request_id = 'er-1-x') OR user_hash IN (SELECT person_hash FROM \
             `bluetick`.`erasure_audit` WHERE request_id = 'er-1-x'))"
        );
    }
}
