//! The ClickHouse side of the audit: every string column of every table of the database
//! (up to `max_rows` rows per table, newest first), rows past their table's retention, and
//! rows of people erased after them.

use super::values::Findings;
use super::{AuditError, Coverage, Limits};
use crate::clickhouse::{quote_ident, ClickHouse, ClickHouseError};
use crate::config::Config;
use crate::model::tables::{
    day_from_yyyymmdd, first_kept_day, yyyymmdd, Table, ERASURE_AUDIT, PERSON_COLUMNS,
};
use std::collections::BTreeMap;
use std::io::Write;

/// Rows between two progress lines of a long scan.
const PROGRESS_EVERY: u64 = 250_000;

pub async fn audit(
    cfg: &Config,
    limits: Limits,
    findings: &mut Findings,
    coverage: &mut Vec<Coverage>,
    progress: &mut dyn Write,
) -> Result<(), AuditError> {
    let ch = ClickHouse::new(&cfg.clickhouse)?;
    for (table, columns) in string_columns(&ch).await? {
        let (scanned, capped) =
            scan_table(&ch, &table, &columns, limits, findings, progress).await?;
        coverage.push(Coverage {
            what: format!(
                "{}.{table} ({} string columns)",
                ch.database(),
                columns.len()
            ),
            scanned,
            unit: "rows",
            capped,
        });
    }
    let partitions = retention(&ch, cfg, findings).await?;
    coverage.push(Coverage {
        what: format!("{} against retention", ch.database()),
        scanned: partitions,
        unit: "partitions",
        capped: false,
    });
    let tables = erased(&ch, findings).await?;
    coverage.push(Coverage {
        what: format!("{} against erasure_audit", ch.database()),
        scanned: tables,
        unit: "tables",
        capped: false,
    });
    Ok(())
}

/// String columns of every MergeTree table of the database, by table; on a cluster, a
/// sharded table's local tables are read through its Distributed table (every shard).
async fn string_columns(ch: &ClickHouse) -> Result<BTreeMap<String, Vec<String>>, ClickHouseError> {
    let rows: Vec<(String, String)> = ch
        .client()
        .query(
            "SELECT replaceRegexpOne(table, '_local$', '') AS t, name FROM system.columns \
             WHERE database = ? AND type LIKE '%String%' \
             AND table IN (SELECT name FROM system.tables WHERE database = ? \
             AND engine LIKE '%MergeTree%')",
        )
        .bind(ch.database())
        .bind(ch.database())
        .fetch_all()
        .await
        .map_err(|e| ch.error(e))?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (table, column) in rows {
        out.entry(table).or_default().push(column);
    }
    Ok(out)
}

/// Reads `columns` of `table` as tab-separated text (newest rows first when the table has a
/// `ts`), checking every value. Returns the rows read and whether the cap stopped it.
async fn scan_table(
    ch: &ClickHouse,
    table: &str,
    columns: &[String],
    limits: Limits,
    findings: &mut Findings,
    progress: &mut dyn Write,
) -> Result<(u64, bool), AuditError> {
    let total: u64 = ch
        .client()
        .query(&format!("SELECT count() FROM {}", quote_ident(table)))
        .fetch_one()
        .await
        .map_err(|e| ch.error(e))?;
    let list: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let has_ts: bool = ch.columns(table).await?.iter().any(|c| c == "ts");
    let order = if has_ts { " ORDER BY ts DESC" } else { "" };
    let sql = format!(
        "SELECT {} FROM {}{order} LIMIT {}",
        list.join(", "),
        quote_ident(table),
        limits.max_rows
    );
    let mut cursor = ch
        .client()
        .query(&sql)
        .fetch_bytes("TabSeparated")
        .map_err(|e| ch.error(e))?;
    let places: Vec<String> = columns.iter().map(|c| format!("{table}.{c}")).collect();
    let (mut rows, mut rest) = (0u64, Vec::new());
    while let Some(chunk) = cursor.next().await.map_err(|e| ch.error(e))? {
        rest.extend_from_slice(&chunk);
        let Some(end) = rest.iter().rposition(|b| *b == b'\n') else {
            continue;
        };
        for line in rest[..end].split(|b| *b == b'\n') {
            for (i, field) in line.split(|b| *b == b'\t').enumerate().take(columns.len()) {
                let value = unescape(field);
                findings.value(&places[i], &columns[i], &value);
            }
            rows += 1;
            if rows % PROGRESS_EVERY == 0 {
                writeln!(progress, "  {table}: {rows} of {total} rows read")?;
            }
        }
        rest.drain(..=end);
    }
    Ok((rows, total > rows))
}

/// ClickHouse's TabSeparated escapes (`\t`, `\n`, `\\`, …) undone.
fn unescape(field: &[u8]) -> String {
    let text = String::from_utf8_lossy(field);
    if !text.contains('\\') {
        return text.into_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Day partitions older than their table's retention, and erasure audit rows older than its.
/// Returns the partitions checked.
async fn retention(
    ch: &ClickHouse,
    cfg: &Config,
    findings: &mut Findings,
) -> Result<u64, AuditError> {
    let now = crate::clock::now_secs();
    let partitions = ch.partitions().await?;
    let checked = partitions.len() as u64;
    for p in partitions {
        let Some(table) = Table::from_name(&p.table) else {
            continue;
        };
        let Some(day) = p
            .partition
            .trim_matches('\'')
            .parse()
            .ok()
            .and_then(day_from_yyyymmdd)
        else {
            continue;
        };
        let days = table.retention_days(&cfg.retention);
        if day < first_kept_day(now, days) {
            findings.add_n(
                "past_retention",
                &format!("{}.{} partition {}", ch.database(), p.table, yyyymmdd(day)),
                p.rows,
                format!("kept {days} days; run `bluetick retention`"),
            );
        }
    }
    let days = cfg.retention.erasure_audit_days;
    let cutoff = now.saturating_sub(u64::from(days) * 86_400);
    let sql = format!(
        "SELECT count() FROM {} WHERE requested_at < toDateTime({cutoff}, 'UTC')",
        ch.table(ERASURE_AUDIT)
    );
    let old: u64 = ch
        .client()
        .query(&sql)
        .fetch_one()
        .await
        .map_err(|e| ch.error(e))?;
    if old > 0 {
        findings.add_n(
            "past_retention",
            &format!("{}.{ERASURE_AUDIT}", ch.database()),
            old,
            format!("kept {days} days; run `bluetick retention`"),
        );
    }
    Ok(checked)
}

/// Rows whose person an erasure record names, written for an event before that erasure: a
/// re-insert (a hand-run INSERT, a sink that ignored the audit, a restore from backup).
async fn erased(ch: &ClickHouse, findings: &mut Findings) -> Result<u64, AuditError> {
    let tables = ch.people_tables().await?;
    for table in &tables {
        for column in &table.columns {
            debug_assert!(PERSON_COLUMNS.contains(column));
            let sql = format!(
                "SELECT count(), any({column}) FROM {t} ALL INNER JOIN \
                 (SELECT person_hash AS {column}, max(requested_at) AS erased_at FROM {audit} \
                 GROUP BY person_hash) USING {column} WHERE {column} != '' AND ts < erased_at",
                t = quote_ident(&table.name),
                audit = quote_ident(ERASURE_AUDIT),
            );
            let (n, hash): (u64, String) = ch
                .client()
                .query(&sql)
                .fetch_one()
                .await
                .map_err(|e| ch.error(e))?;
            if n > 0 {
                let head: String = hash.chars().take(12).collect();
                findings.add_n(
                    "erased_person",
                    &format!("{}.{}", table.name, column),
                    n,
                    format!("{column} {head}… erased after these rows' time"),
                );
            }
        }
    }
    Ok(tables.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tab_separated_escapes_are_undone() {
        assert_eq!(unescape(b"a\\tb\\nc\\\\d"), "a\tb\nc\\d");
        assert_eq!(unescape(b"plain"), "plain");
    }
}
