//! `bluetick migrate`: creates or updates the ClickHouse schema from the versioned SQL files in
//! `schemas/clickhouse/` (compiled into the binary), and creates the Kafka topics.
//!
//! Invariants: each file is applied once, in version order, and recorded with its SHA-256 in
//! `schema_migrations`; a recorded file whose text changed is refused, never re-run. Statements
//! are idempotent (`IF NOT EXISTS`), so a run interrupted between a statement and its record
//! is safe to repeat.

use crate::clickhouse::{quote_ident, ClickHouse, ClickHouseError};
use crate::config::Config;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::time::Duration;

pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every schema file, in the order they apply. Add a file here and in `schemas/clickhouse/`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "001_tables.sql",
        sql: include_str!("../schemas/clickhouse/001_tables.sql"),
    },
    Migration {
        version: 2,
        name: "002_views.sql",
        sql: include_str!("../schemas/clickhouse/002_views.sql"),
    },
    Migration {
        version: 3,
        name: "003_erasure_audit.sql",
        sql: include_str!("../schemas/clickhouse/003_erasure_audit.sql"),
    },
];

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    ClickHouse(#[from] ClickHouseError),
    #[error(
        "{name} (version {version}) was applied with other contents (recorded sha256 {recorded}, \
         file sha256 {current}); applied files never change: add a new file instead"
    )]
    Changed {
        version: u32,
        name: String,
        recorded: String,
        current: String,
    },
    #[error("kafka topics: {0}")]
    Kafka(#[from] crate::kafka::SetupError),
    #[error("writing progress: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct Applied {
    version: u32,
    checksum: String,
}

impl Migration {
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }

    /// The statements of the file: `;`-separated, `--` comment lines removed. Schema files
    /// therefore hold no `;` inside literals.
    pub fn statements(&self) -> Vec<String> {
        let text: Vec<&str> = self
            .sql
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect();
        text.join("\n")
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// Applies what is missing and reports each file on `out`. Returns how many were applied.
pub async fn run(cfg: &Config, out: &mut impl Write) -> Result<usize, MigrateError> {
    let ch = ClickHouse::new(&cfg.clickhouse);
    let db = quote_ident(ch.database());
    ch.server()
        .query(&format!("CREATE DATABASE IF NOT EXISTS {db}"))
        .execute()
        .await
        .map_err(|e| ch.error(e))?;
    ch.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, \
         checksum String, applied_at DateTime('UTC')) ENGINE = MergeTree ORDER BY version",
    )
    .await?;
    let applied: Vec<Applied> = ch
        .fetch_all("SELECT version, checksum FROM schema_migrations ORDER BY version")
        .await?;

    let mut count = 0;
    for m in MIGRATIONS {
        let current = m.checksum();
        if let Some(a) = applied.iter().find(|a| a.version == m.version) {
            if a.checksum != current {
                return Err(MigrateError::Changed {
                    version: m.version,
                    name: m.name.into(),
                    recorded: a.checksum.clone(),
                    current,
                });
            }
            writeln!(out, "  = {} already applied", m.name)?;
            continue;
        }
        for statement in m.statements() {
            ch.execute(&statement).await?;
        }
        ch.client()
            .query("INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, now())")
            .bind(m.version)
            .bind(m.name)
            .bind(&current)
            .execute()
            .await
            .map_err(|e| ch.error(e))?;
        writeln!(out, "  + {} applied", m.name)?;
        count += 1;
    }
    writeln!(
        out,
        "clickhouse {}/{}: {count} applied, {} already there",
        ch.url(),
        ch.database(),
        MIGRATIONS.len() - count
    )?;
    Ok(count)
}

/// Creates the Kafka topics bluetick uses (existing ones are left as they are).
pub async fn topics(cfg: &Config, out: &mut impl Write) -> Result<(), MigrateError> {
    crate::kafka::ensure_topics(&cfg.kafka, Duration::from_secs(15)).await?;
    let k = &cfg.kafka;
    writeln!(
        out,
        "kafka {}: topics {}, {}, {} present",
        k.brokers, k.events_topic, k.security_topic, k.dead_letter_topic
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_unique_increasing_and_match_file_names() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
            assert!(
                m.name.starts_with(&format!("{:03}_", m.version)),
                "{}",
                m.name
            );
        }
    }

    #[test]
    fn files_split_into_their_create_statements() {
        let tables = MIGRATIONS[0].statements();
        assert_eq!(tables.len(), 4);
        assert!(tables
            .iter()
            .all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS")));
        let views = MIGRATIONS[1].statements();
        assert_eq!(views.len(), 2);
        assert!(views
            .iter()
            .all(|s| s.starts_with("CREATE VIEW IF NOT EXISTS")));
    }
}
