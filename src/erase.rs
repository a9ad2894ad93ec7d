//! `bluetick erase`: deletes every row held about one or more people, found by their keyed
//! hash, proves none is left, and records that it did.
//!
//! Which tables hold people is read from the live schema ([`ClickHouse::people_tables`]), so
//! a table added later is erased too without a code change. Steps per table: count the rows, `ALTER TABLE … DELETE` (a
//! mutation: ClickHouse rewrites the affected parts), wait for the mutation, count again. Then
//! one audit row per person in `erasure_audit`. Running it again is harmless: nothing left to
//! delete, and a new audit row says so.

use crate::clickhouse::{hash_list, quote_ident, ClickHouse, ClickHouseError};
use crate::clock::now_secs;
use crate::config::Config;
use crate::model::tables::ERASURE_AUDIT;
use crate::privacy::PhoneHash;
use serde::Deserialize;
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

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub request_id: String,
    /// Rows removed per table.
    pub removed: BTreeMap<String, u64>,
    /// Rows removed per person (hex hash).
    pub per_person: BTreeMap<String, u64>,
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct Count {
    person_hash: String,
    rows: u64,
}

/// Erases every row of the people in `hashes`, waiting up to `timeout` per table.
pub async fn run(
    cfg: &Config,
    hashes: &[PhoneHash],
    timeout: Duration,
    out: &mut impl Write,
) -> Result<Report, EraseError> {
    let ch = ClickHouse::new(&cfg.clickhouse);
    let requested_at = now_secs();
    let request_id = request_id(hashes, requested_at);
    let list = hash_list(hashes);
    let tables: Vec<String> = ch
        .people_tables()
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    writeln!(
        out,
        "erasure {request_id}: {} person(s), tables {}",
        hashes.len(),
        tables.join(", ")
    )?;
    let mut report = Report {
        request_id: request_id.clone(),
        removed: BTreeMap::new(),
        per_person: hashes.iter().map(|h| (h.to_string(), 0)).collect(),
    };
    for table in &tables {
        let done = || summary(&report.removed);
        let before = counts(&ch, table, &list).await?;
        let rows: u64 = before.iter().map(|c| c.rows).sum();
        write!(out, "  {table}: {rows} rows")?;
        out.flush()?;
        if rows > 0 {
            let sql = format!(
                "ALTER TABLE {} DELETE WHERE person_hash IN ({list})",
                quote_ident(table)
            );
            ch.execute(&sql).await?;
            if !ch.wait_for_mutations(table, timeout).await? {
                writeln!(out, " … still deleting")?;
                return Err(EraseError::Timeout {
                    table: table.clone(),
                    secs: timeout.as_secs(),
                    done: done(),
                });
            }
        }
        let after: u64 = counts(&ch, table, &list)
            .await?
            .iter()
            .map(|c| c.rows)
            .sum();
        if after > 0 {
            writeln!(out, " … {after} remain")?;
            return Err(EraseError::Remaining {
                table: table.clone(),
                remaining: after,
                done: done(),
            });
        }
        writeln!(out, " erased, 0 remain")?;
        report.removed.insert(table.clone(), rows);
        for c in before {
            *report.per_person.entry(c.person_hash).or_default() += c.rows;
        }
    }
    audit(&ch, &report, &tables, requested_at).await?;
    let total: u64 = report.removed.values().sum();
    writeln!(
        out,
        "erasure {request_id}: {total} rows removed, 0 remain; audit rows written to erasure_audit"
    )?;
    Ok(report)
}

async fn counts(ch: &ClickHouse, table: &str, list: &str) -> Result<Vec<Count>, ClickHouseError> {
    let sql = format!(
        "SELECT person_hash, count() AS rows FROM {} WHERE person_hash IN ({list}) \
         GROUP BY person_hash",
        quote_ident(table)
    );
    ch.fetch_all(&sql).await
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
}

async fn audit(
    ch: &ClickHouse,
    report: &Report,
    tables: &[String],
    requested_at: u64,
) -> Result<(), ClickHouseError> {
    let tables = tables.join(",");
    let finished_at = now_secs() as u32;
    let err = |e| ch.error(e);
    let mut insert = ch
        .client()
        .insert::<AuditRow<'static>>(ERASURE_AUDIT)
        .await
        .map_err(err)?;
    for (hash, rows) in &report.per_person {
        insert
            .write(&AuditRow {
                request_id: &report.request_id,
                person_hash: hash,
                tables: &tables,
                rows_removed: *rows,
                rows_remaining: 0,
                requested_at: requested_at as u32,
                finished_at,
                outcome: "erased",
            })
            .await
            .map_err(err)?;
    }
    insert.end().await.map_err(err)
}

/// A request id that is unique per run and says when it ran: `er-<unix secs>-<16 hex>`.
fn request_id(hashes: &[PhoneHash], at: u64) -> String {
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
    format!("er-{at}-{:016x}", h.digest())
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
        assert!(a.starts_with("er-1795521600-"));
        assert_ne!(a, b);
    }
}
