//! `bluetick export`: every row held about a person, under every identifier Meta gave for
//! them, from every table that holds people, in a stable machine-readable form
//! (`schemas/export.v1.schema.json`): JSON Lines, one object per row with its `table` first
//! and the table's columns in schema order, or CSV with a `table` column and the union of the
//! columns. 64-bit integers are strings in JSON, as ClickHouse writes them, so no reader
//! loses precision. Lists of any length work: identifiers are queried in chunks and each row
//! is written once.

use crate::clickhouse::{
    hash_list, quote_ident, quote_literal, ClickHouse, ClickHouseError, CopyError,
    IDENTIFIERS_PER_QUERY,
};
use crate::config::Config;
use crate::privacy::PersonHash;
use std::collections::BTreeMap;
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    ClickHouse(#[from] ClickHouseError),
    #[error("clickhouse answered a row that is not a JSON object: {0}")]
    Row(String),
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    #[error("tenant {0:?}: use the label of the tenant map (letters, digits, '-', '_', '.')")]
    Tenant(String),
}

impl From<CopyError> for ExportError {
    fn from(e: CopyError) -> Self {
        match e {
            CopyError::ClickHouse(e) => ExportError::ClickHouse(e),
            CopyError::Io(e) => ExportError::Io(e),
        }
    }
}

/// Rows exported per table.
pub type Summary = BTreeMap<String, u64>;

/// Writes the rows of the people in `hashes` to `data` and a line per table to `progress`.
pub async fn run(
    cfg: &Config,
    hashes: &[PersonHash],
    format: Format,
    data: &mut dyn Write,
    progress: &mut dyn Write,
) -> Result<Summary, ExportError> {
    let ch = ClickHouse::new(&cfg.clickhouse)?;
    let people = ch.people_tables().await?;
    let identifiers = ch.linked_identifiers(&people, hashes).await?;
    let mut tables = Vec::new();
    for table in people {
        // Keyed by (time, event id): the export's order, and one line per row even when a
        // row matches identifiers in two chunks.
        let mut rows: BTreeMap<(String, String), String> = BTreeMap::new();
        for chunk in identifiers.chunks(IDENTIFIERS_PER_QUERY) {
            // FINAL: a row delivered twice (Meta retry, Kafka replay) is one row held.
            let sql = format!(
                "SELECT * FROM {}{} WHERE {}",
                quote_ident(&table.name),
                table.final_clause(),
                table.any_of(&hash_list(chunk))
            );
            let bytes = ch.fetch_bytes(&sql, "JSONEachRow").await?;
            for line in String::from_utf8_lossy(&bytes).lines() {
                if line.trim().is_empty() {
                    continue;
                }
                rows.insert(order_key(line)?, line.to_string());
            }
        }
        let text = rows.into_values().collect::<Vec<_>>().join("\n");
        let columns = if format == Format::Csv {
            ch.columns(&table.name).await?
        } else {
            Vec::new()
        };
        tables.push((table.name, columns, text));
    }
    let mut summary = Summary::new();
    match format {
        Format::Jsonl => {
            for (table, _, text) in &tables {
                let n = write_jsonl(table, text, data)?;
                summary.insert(table.clone(), n);
            }
        }
        Format::Csv => summary = write_csv(&tables, data)?,
    }
    data.flush()?;
    for (table, n) in &summary {
        writeln!(progress, "  {table}: {n} rows")?;
    }
    writeln!(
        progress,
        "export: {} rows for {} person(s)",
        summary.values().sum::<u64>(),
        hashes.len()
    )?;
    Ok(summary)
}

/// Writes every row of one client business (`tenant`) as JSON Lines, `{"table":…,<columns>}`
/// like a person's export: what a BSP hands a client that leaves it. Streamed table by
/// table, oldest first, so a tenant of any size passes through without being held in memory.
pub async fn run_tenant(
    cfg: &Config,
    tenant: &str,
    data: &mut dyn Write,
    progress: &mut dyn Write,
) -> Result<Summary, ExportError> {
    let label_ok = !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !label_ok {
        return Err(ExportError::Tenant(tenant.to_string()));
    }
    let ch = ClickHouse::new(&cfg.clickhouse)?;
    let mut summary = Summary::new();
    for table in ch.tenant_tables().await? {
        let sql = format!(
            "SELECT {} AS `table`, * FROM {} FINAL WHERE tenant = {} ORDER BY ts, event_id",
            quote_literal(&table),
            quote_ident(&table),
            quote_literal(tenant)
        );
        let mut lines = LineCount {
            inner: &mut *data,
            lines: 0,
        };
        ch.copy_bytes(&sql, "JSONEachRow", &mut lines).await?;
        writeln!(progress, "  {table}: {} rows", lines.lines)?;
        summary.insert(table, lines.lines);
    }
    data.flush()?;
    writeln!(
        progress,
        "export: {} rows of tenant {tenant}",
        summary.values().sum::<u64>()
    )?;
    Ok(summary)
}

/// A writer that counts the lines passing through it.
struct LineCount<'w> {
    inner: &'w mut dyn Write,
    lines: u64,
}

impl Write for LineCount<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// (ts, event_id) of a JSONEachRow line.
fn order_key(line: &str) -> Result<(String, String), ExportError> {
    let row: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)
        .map_err(|_| ExportError::Row(line.chars().take(80).collect()))?;
    let text = |k: &str| match row.get(k) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    };
    Ok((text("ts"), text("event_id")))
}

/// Each JSONEachRow line becomes `{"table":"…",<its columns>}`.
fn write_jsonl(table: &str, text: &str, out: &mut dyn Write) -> Result<u64, ExportError> {
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Some(rest) = line.trim().strip_prefix('{') else {
            return Err(ExportError::Row(line.chars().take(80).collect()));
        };
        let sep = if rest.trim_start().starts_with('}') {
            ""
        } else {
            ","
        };
        writeln!(
            out,
            "{{\"table\":{}{sep}{rest}",
            serde_json::Value::from(table)
        )?;
        n += 1;
    }
    Ok(n)
}

fn write_csv(
    tables: &[(String, Vec<String>, String)],
    out: &mut dyn Write,
) -> Result<Summary, ExportError> {
    let mut header: Vec<&str> = vec!["table"];
    for (_, columns, _) in tables {
        for c in columns {
            if !header.contains(&c.as_str()) {
                header.push(c);
            }
        }
    }
    let line: Vec<String> = header.iter().map(|h| csv_field(h)).collect();
    writeln!(out, "{}", line.join(","))?;
    let mut summary = Summary::new();
    for (table, _, text) in tables {
        let mut n = 0;
        for row in text.lines().filter(|l| !l.trim().is_empty()) {
            let value: serde_json::Map<String, serde_json::Value> = serde_json::from_str(row)
                .map_err(|_| ExportError::Row(row.chars().take(80).collect()))?;
            let fields: Vec<String> = header
                .iter()
                .map(|h| match (*h, value.get(*h)) {
                    ("table", _) => csv_field(table),
                    (_, Some(serde_json::Value::String(s))) => csv_field(s),
                    (_, Some(v)) => csv_field(&v.to_string()),
                    (_, None) => String::new(),
                })
                .collect();
            writeln!(out, "{}", fields.join(","))?;
            n += 1;
        }
        summary.insert(table.clone(), n);
    }
    Ok(summary)
}

/// RFC 4180: quoted when it holds a comma, quote or line break. A cell that a spreadsheet
/// would run as a formula (it starts with `=`, `+`, `-`, `@`, a tab or a carriage return) is
/// prefixed with `'` so that it stays text.
fn csv_field(s: &str) -> String {
    let neutral = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if neutral.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", neutral.replace('"', "\"\""))
    } else {
        neutral
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_puts_the_table_first_and_keeps_the_row() {
        let mut out = Vec::new();
        let n =
            write_jsonl("message_status", "{\"a\":\"1\",\"b\":2}\n\n{}\n", &mut out).expect("rows");
        assert_eq!(n, 2);
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(
            lines[0],
            serde_json::json!({"table": "message_status", "a": "1", "b": 2})
        );
        assert_eq!(lines[1], serde_json::json!({"table": "message_status"}));
        assert!(text.starts_with("{\"table\":\"message_status\",\"a\""));
    }

    #[test]
    fn csv_cells_never_run_as_formulas() {
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        for (cell, out) in [("+1", "'+1"), ("-2", "'-2"), ("@a", "'@a"), ("\tx", "'\tx")] {
            assert_eq!(csv_field(cell), out);
        }
        assert_eq!(csv_field("91XXXXXX4321"), "91XXXXXX4321");
    }

    #[test]
    fn csv_has_one_header_over_all_tables() {
        let tables = vec![
            (
                "t1".to_string(),
                vec!["a".to_string(), "b".to_string()],
                "{\"a\":\"x,y\",\"b\":1}\n".to_string(),
            ),
            (
                "t2".to_string(),
                vec!["a".to_string(), "c".to_string()],
                "{\"a\":\"say \\\"hi\\\"\",\"c\":\"z\"}\n".to_string(),
            ),
        ];
        let mut out = Vec::new();
        let summary = write_csv(&tables, &mut out).expect("csv");
        assert_eq!(summary["t1"], 1);
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "table,a,b,c\nt1,\"x,y\",1,\nt2,\"say \"\"hi\"\"\",,z\n"
        );
    }
}
