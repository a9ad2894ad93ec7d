//! `bluetick retention`: drops the day partitions of each table whose every row is older than
//! the table's retention (`[retention]` in the config).
//!
//! Retention is a partition drop, not a row delete: it is cheap, immediate and leaves no
//! half-deleted day. It is safe to run from cron at any time and concurrently: it reads the
//! live partition list each run, and dropping a partition that another run already dropped is
//! a no-op in ClickHouse.

use crate::clickhouse::{ClickHouse, ClickHouseError};
use crate::config::{Config, RetentionConfig};
use crate::model::tables::{day_from_yyyymmdd, first_kept_day, yyyymmdd, Table, ERASURE_AUDIT};
use std::io::Write;

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    ClickHouse(#[from] ClickHouseError),
    #[error("writing the report: {0}")]
    Io(#[from] std::io::Error),
}

/// One day partition of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// The table whose retention applies: the table itself, or the one a daily aggregate
    /// summarises.
    pub table: Table,
    /// The table the partition is in.
    pub name: &'static str,
    /// `YYYYMMDD`, as `toYYYYMMDD(ts)` names it.
    pub id: u32,
    pub rows: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Partitions dropped (or, on a dry run, that would be).
    pub dropped: Vec<Partition>,
    /// Partitions left in place.
    pub kept: usize,
    /// Erasure audit rows past their retention (deleted, or on a dry run, that would be).
    pub audit_rows: u64,
}

/// Drops expired partitions (none if `dry_run`), printing one line per partition and a
/// summary to `out`.
pub async fn run(
    cfg: &Config,
    dry_run: bool,
    out: &mut impl Write,
) -> Result<Outcome, RetentionError> {
    let ch = ClickHouse::new(&cfg.clickhouse)?;
    let partitions = list(&ch).await?;
    let now = crate::clock::now_secs();
    let (expired, kept) = split(partitions, now, &cfg.retention);
    let verb = if dry_run { "would drop" } else { "dropped" };
    for p in &expired {
        if !dry_run {
            let sql = format!(
                "ALTER TABLE {} DROP PARTITION {}",
                ch.alter_target(p.name),
                p.id
            );
            ch.execute(&sql).await?;
        }
        writeln!(
            out,
            "{verb} {}.{} partition {} ({} rows, {} days kept)",
            ch.database(),
            p.name,
            p.id,
            p.rows,
            p.table.retention_days(&cfg.retention)
        )?;
    }
    let rows: u64 = expired.iter().map(|p| p.rows).sum();
    writeln!(
        out,
        "retention: {verb} {} partitions ({rows} rows); {kept} partitions within retention",
        expired.len()
    )?;
    let audit_rows = expire_audit(&ch, cfg, dry_run, out).await?;
    Ok(Outcome {
        dropped: expired,
        kept,
        audit_rows,
    })
}

/// The erasure audit is small and kept for years, and not partitioned by day: its expired
/// rows go with a delete mutation rather than a partition drop.
async fn expire_audit(
    ch: &ClickHouse,
    cfg: &Config,
    dry_run: bool,
    out: &mut impl Write,
) -> Result<u64, RetentionError> {
    let days = cfg.retention.erasure_audit_days;
    let cutoff = crate::clock::now_secs().saturating_sub(u64::from(days) * 86_400);
    let table = ch.table(ERASURE_AUDIT);
    let old = format!("requested_at < toDateTime({cutoff}, 'UTC')");
    let rows: u64 = ch
        .client()
        .query(&format!("SELECT count() FROM {table} WHERE {old}"))
        .fetch_one()
        .await
        .map_err(|e| ch.error(e))?;
    if rows > 0 && !dry_run {
        ch.execute(&format!("ALTER TABLE {table} DELETE WHERE {old}"))
            .await?;
        ch.wait_for_mutations(ERASURE_AUDIT, std::time::Duration::from_secs(600))
            .await?;
    }
    if rows > 0 {
        let verb = if dry_run { "would delete" } else { "deleted" };
        writeln!(
            out,
            "{verb} {rows} {ERASURE_AUDIT} rows older than {days} days"
        )?;
    }
    Ok(rows)
}

/// One table against the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compliance {
    pub table: &'static str,
    pub days: u32,
    pub oldest: Option<u32>,
    pub partitions: usize,
    pub rows: u64,
    /// No partition is older than the policy allows today.
    pub complies: bool,
}

/// Prints the policy (days and basis per table) against what each table holds today.
pub async fn report(cfg: &Config, out: &mut impl Write) -> Result<Vec<Compliance>, RetentionError> {
    let ch = ClickHouse::new(&cfg.clickhouse)?;
    let partitions = list(&ch).await?;
    let now = crate::clock::now_secs();
    let policy = &cfg.retention;
    writeln!(
        out,
        "retention policy of {}.* on {} (UTC), by event time",
        ch.database(),
        yyyymmdd(now / 86_400)
    )?;
    writeln!(
        out,
        "{:<16} {:>5}  {:<8}  {:<8}  {:>10}  {:>12}  complies",
        "table", "days", "keeps", "oldest", "partitions", "rows"
    )?;
    let mut result = Vec::new();
    for table in Table::ALL {
        let mine: Vec<&Partition> = partitions.iter().filter(|p| p.table == table).collect();
        let oldest = mine.iter().map(|p| p.id).min();
        let first = first_kept_partition(table, now, policy);
        let c = Compliance {
            table: table.name(),
            days: table.retention_days(policy),
            oldest,
            // Partitions include its daily aggregates' (same policy); rows are its own.
            partitions: mine.len(),
            rows: mine
                .iter()
                .filter(|p| p.name == table.name())
                .map(|p| p.rows)
                .sum(),
            complies: oldest.map_or(true, |o| o >= first),
        };
        writeln!(
            out,
            "{:<16} {:>5}  {:<8}  {:<8}  {:>10}  {:>12}  {}",
            table.name(),
            c.days,
            format!(">={first}"),
            oldest.map_or("-".to_string(), |o| o.to_string()),
            c.partitions,
            c.rows,
            if c.complies {
                "yes"
            } else {
                "NO: run `bluetick retention`"
            }
        )?;
        result.push(c);
    }
    result.push(audit_compliance(&ch, policy, now, out).await?);
    writeln!(out, "basis:")?;
    for table in Table::ALL {
        writeln!(out, "  {:<16} {}", table.name(), table.basis(policy))?;
    }
    writeln!(
        out,
        "  {:<16} {}",
        ERASURE_AUDIT, policy.erasure_audit_basis
    )?;
    writeln!(
        out,
        "  {:<16} kept by bluetick: none. Request logs go to the process's stderr; keep them \
         in your log pipeline for the days your policy states (90 is common).",
        "api logs"
    )?;
    Ok(result)
}

/// The erasure audit's line of the report: its oldest row by request time.
async fn audit_compliance(
    ch: &ClickHouse,
    policy: &RetentionConfig,
    now: u64,
    out: &mut impl Write,
) -> Result<Compliance, RetentionError> {
    let sql = format!(
        "SELECT count(), toUInt32(min(requested_at)) FROM {}",
        ch.table(ERASURE_AUDIT)
    );
    let (rows, oldest): (u64, u32) = ch
        .client()
        .query(&sql)
        .fetch_one()
        .await
        .map_err(|e| ch.error(e))?;
    let days = policy.erasure_audit_days;
    let first = yyyymmdd(first_kept_day(now, days));
    let oldest = (rows > 0).then(|| yyyymmdd(u64::from(oldest) / 86_400));
    let c = Compliance {
        table: ERASURE_AUDIT,
        days,
        oldest,
        partitions: 0,
        rows,
        complies: oldest.map_or(true, |o| o >= first),
    };
    writeln!(
        out,
        "{:<16} {:>5}  {:<8}  {:<8}  {:>10}  {:>12}  {}",
        ERASURE_AUDIT,
        days,
        format!(">={first}"),
        oldest.map_or("-".to_string(), |o| o.to_string()),
        "-",
        rows,
        if c.complies {
            "yes"
        } else {
            "NO: run `bluetick retention`"
        }
    )?;
    Ok(c)
}

/// Active day partitions of bluetick's tables, oldest first.
pub async fn list(ch: &ClickHouse) -> Result<Vec<Partition>, ClickHouseError> {
    let rows = ch.partitions().await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        // A daily aggregate goes with the rows it summarises.
        let known = Table::ALL
            .into_iter()
            .map(|t| (t.name(), t))
            .chain(crate::rollup::aggregate_tables())
            .find(|(name, _)| *name == r.table);
        let Some((name, table)) = known else {
            continue;
        };
        match r.partition.trim_matches('\'').parse::<u32>() {
            Ok(id) if day_from_yyyymmdd(id).is_some() => out.push(Partition {
                table,
                name,
                id,
                rows: r.rows,
            }),
            _ => tracing::warn!(
                table = %r.table,
                partition = %r.partition,
                "partition is not a day (YYYYMMDD); left alone"
            ),
        }
    }
    Ok(out)
}

/// Splits partitions into those past retention at `now` and the count of the rest.
pub fn split(
    partitions: Vec<Partition>,
    now_secs: u64,
    retention: &RetentionConfig,
) -> (Vec<Partition>, usize) {
    let (expired, kept): (Vec<_>, Vec<_>) = partitions.into_iter().partition(|p| {
        let first = first_kept_day(now_secs, p.table.retention_days(retention));
        day_from_yyyymmdd(p.id).is_some_and(|day| day < first)
    });
    (expired, kept.len())
}

/// The oldest partition id a table keeps at `now`, for reports.
pub fn first_kept_partition(table: Table, now_secs: u64, cfg: &RetentionConfig) -> u32 {
    yyyymmdd(first_kept_day(now_secs, table.retention_days(cfg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_days_past_retention_are_expired() {
        // 2026-11-24T12:00:00Z; 90 days earlier is 2026-08-26 (noon).
        let now = 1_795_521_600;
        let p = |table: Table, id| Partition {
            table,
            name: table.name(),
            id,
            rows: 1,
        };
        let parts = vec![
            p(Table::MessageStatus, 20_260_825),
            p(Table::MessageStatus, 20_260_826),
            p(Table::MessageStatus, 20_261_124),
            p(Table::SecurityEvent, 20_260_825),
            p(Table::SecurityEvent, 20_260_527),
            p(Table::SecurityEvent, 20_260_528),
        ];
        let (expired, kept) = split(parts, now, &RetentionConfig::default());
        let ids: Vec<(Table, u32)> = expired.iter().map(|p| (p.table, p.id)).collect();
        assert_eq!(
            ids,
            [
                (Table::MessageStatus, 20_260_825),
                (Table::SecurityEvent, 20_260_527)
            ]
        );
        assert_eq!(kept, 4);
        assert_eq!(
            first_kept_partition(Table::MessageStatus, now, &RetentionConfig::default()),
            20_260_826
        );
    }
}
