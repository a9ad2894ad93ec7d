//! `bluetick migrate`: creates or updates the ClickHouse schema from the versioned SQL files in
//! `schemas/clickhouse/` (compiled into the binary), and creates the Kafka topics.
//!
//! Invariants: each file is applied once, in version order, and recorded with its SHA-256 in
//! `schema_migrations`; a recorded file whose text changed is refused, never re-run. Statements
//! are idempotent (`IF NOT EXISTS`), so a run interrupted between a statement and its record
//! is safe to repeat, and so are runs at the same time (two Jobs of one release, a retried
//! pod): each applies what it finds missing, a column another run added first is taken as
//! added, and a version recorded twice is one version.
//!
//! [`wait_applied`] only reads: an init container runs it so the sink starts after the schema
//! it writes to exists, with no right to change it.

use crate::clickhouse::cluster::ClusterDdl;
use crate::clickhouse::{quote_ident, ClickHouse, ClickHouseError};
use crate::config::{Config, ConfigError};
use crate::model::tables::ID_COLUMNS;
use crate::privacy::IdKey;
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
    Migration {
        version: 4,
        name: "004_people_and_keys.sql",
        sql: include_str!("../schemas/clickhouse/004_people_and_keys.sql"),
    },
    Migration {
        version: 5,
        name: "005_security_counts.sql",
        sql: include_str!("../schemas/clickhouse/005_security_counts.sql"),
    },
    Migration {
        version: 6,
        name: "006_meta_coverage.sql",
        sql: include_str!("../schemas/clickhouse/006_meta_coverage.sql"),
    },
    Migration {
        version: 7,
        name: "007_daily_aggregates.sql",
        sql: include_str!("../schemas/clickhouse/007_daily_aggregates.sql"),
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
    #[error("rows written before schema 004 hold Meta's raw ids and must be re-keyed: {0}")]
    IdKey(#[from] ConfigError),
    #[error("writing progress: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "schema not migrated after {secs} s: {missing} not applied; run `bluetick migrate` \
         (the migrate Job) with this release"
    )]
    NotApplied { secs: u64, missing: String },
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
    let ch = ClickHouse::new(&cfg.clickhouse)?;
    let db = quote_ident(ch.database());
    let on_cluster = ch
        .cluster()
        .map(|c| format!(" ON CLUSTER {}", quote_ident(c)))
        .unwrap_or_default();
    ch.server()
        .query(&format!("CREATE DATABASE IF NOT EXISTS {db}{on_cluster}"))
        .execute()
        .await
        .map_err(|e| ch.error(e))?;
    let cluster = ch.cluster().map(|cluster| ClusterDdl {
        cluster,
        database: ch.database(),
    });
    // The statements that do `statement` where the schema lives: one server, or the cluster.
    let where_it_lives = |statement: &str| match &cluster {
        Some(ddl) => ddl.rewrite(statement),
        None => vec![statement.to_string()],
    };
    for s in where_it_lives(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, \
         checksum String, applied_at DateTime('UTC')) ENGINE = MergeTree ORDER BY version",
    ) {
        ch.execute(&s).await?;
    }
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
        for statement in m.statements().iter().flat_map(|s| where_it_lives(s)) {
            match ch.execute(&statement).await {
                // ClickHouse 18.16 has no `ADD COLUMN IF NOT EXISTS`: a run interrupted after
                // adding a column finds it there (code 44, also when a server of the cluster
                // reports it) and goes on.
                Err(e)
                    if (e.code() == Some(44) || e.message().contains("Code: 44,"))
                        && statement.contains("ADD COLUMN") => {}
                result => result?,
            }
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
    rekey_legacy_ids(cfg, &ch, out).await?;
    Ok(count)
}

/// Waits until every migration this binary knows is recorded in `schema_migrations` with its
/// checksum, polling; reads only. For an init container in front of the sink.
pub async fn wait_applied(
    cfg: &Config,
    timeout: Duration,
    out: &mut impl Write,
) -> Result<(), MigrateError> {
    let ch = ClickHouse::new(&cfg.clickhouse)?;
    let deadline = std::time::Instant::now() + timeout;
    let mut said = String::new();
    loop {
        let applied: Vec<Applied> = ch
            .fetch_all("SELECT version, checksum FROM schema_migrations")
            .await
            .unwrap_or_default();
        let mut missing = Vec::new();
        for m in MIGRATIONS {
            match applied.iter().find(|a| a.version == m.version) {
                Some(a) if a.checksum != m.checksum() => {
                    return Err(MigrateError::Changed {
                        version: m.version,
                        name: m.name.into(),
                        recorded: a.checksum.clone(),
                        current: m.checksum(),
                    })
                }
                Some(_) => {}
                None => missing.push(m.name),
            }
        }
        if missing.is_empty() {
            writeln!(
                out,
                "schema at version {}: every migration applied",
                MIGRATIONS.len()
            )?;
            return Ok(());
        }
        let missing = missing.join(", ");
        if std::time::Instant::now() >= deadline {
            return Err(MigrateError::NotApplied {
                secs: timeout.as_secs(),
                missing,
            });
        }
        if missing != said {
            writeln!(
                out,
                "waiting for the migrate job: {missing} not applied yet"
            )?;
            said = missing;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// A row whose id column holds something other than a pseudonym (32 hex digits) or nothing:
/// Meta's raw id, written before schema 004.
fn raw_id(column: &str) -> String {
    format!("({column} != '' AND NOT match({column}, '^[0-9a-f]{{32}}$'))")
}

/// Re-keys rows written before schema 004, whose id columns hold Meta's raw ids (which carry
/// phone numbers): each such row is copied with its ids replaced by their pseudonyms, then
/// the raw rows are deleted (a mutation). The pseudonym is computed by ClickHouse with SHA-256
/// from the id key's HMAC pads, so no row leaves the server; the statement is kept out of the
/// query log. Idempotent: an interrupted run leaves raw rows (and perhaps copies that
/// collapse with the next run's), and the next run finishes it. Needs the id key only when
/// such rows exist.
async fn rekey_legacy_ids(
    cfg: &Config,
    ch: &ClickHouse,
    out: &mut impl Write,
) -> Result<(), MigrateError> {
    for (table, id_columns) in ID_COLUMNS {
        let raw = id_columns
            .iter()
            .map(|c| raw_id(c))
            .collect::<Vec<_>>()
            .join(" OR ");
        let sql = format!("SELECT count() FROM {} WHERE {raw}", quote_ident(table));
        let rows: u64 = ch
            .client()
            .query(&sql)
            .fetch_one()
            .await
            .map_err(|e| ch.error(e))?;
        if rows == 0 {
            continue;
        }
        let key = IdKey::new(cfg.id_key()?.expose().as_bytes());
        let (ipad, opad) = key.pads();
        let pseudonym = |c: &str| {
            format!(
                "if({c} = '' OR match({c}, '^[0-9a-f]{{32}}$'), {c}, lower(hex(substring(SHA256(\
                 concat(unhex('{}'), SHA256(concat(unhex('{}'), {c})))), 1, 16))))",
                hex::encode(opad),
                hex::encode(ipad)
            )
        };
        let columns = ch.columns(table).await?;
        let select: Vec<String> = columns
            .iter()
            .map(|c| {
                // No alias: ClickHouse lets an alias shadow the column in WHERE, which would
                // then test the new value instead of the raw one.
                if id_columns.contains(&c.as_str()) {
                    pseudonym(c)
                } else {
                    quote_ident(c)
                }
            })
            .collect();
        let names: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
        let insert = format!(
            "INSERT INTO {t} ({}) SELECT {} FROM {t} WHERE {raw}",
            names.join(", "),
            select.join(", "),
            t = quote_ident(table)
        );
        ch.client()
            .query(&insert)
            .with_setting("log_queries", "0")
            .execute()
            .await
            .map_err(|e| ch.error(e))?;
        ch.execute(&format!(
            "ALTER TABLE {} DELETE WHERE {raw}",
            ch.alter_target(table)
        ))
        .await?;
        ch.wait_for_mutations(table, Duration::from_secs(3600))
            .await?;
        writeln!(
            out,
            "  ~ {table}: {rows} rows written before schema 004 re-keyed"
        )?;
    }
    Ok(())
}

/// Creates the Kafka topics bluetick uses and brings existing ones to the config: partitions
/// and replication checked, `retention.ms` (and `min.insync.replicas`) set where they differ.
pub async fn topics(cfg: &Config, out: &mut impl Write) -> Result<(), MigrateError> {
    let k = &cfg.kafka;
    let c = k.clone();
    tokio::task::spawn_blocking(move || {
        crate::kafka::check_connection(&c, Duration::from_secs(15))
    })
    .await
    .map_err(|e| MigrateError::Io(std::io::Error::other(e)))??;
    for t in crate::kafka::topics::align(k, Duration::from_secs(15)).await? {
        let what = if t.created { "created" } else { "present" };
        writeln!(out, "  {} {}", t.name, what)?;
        for (name, old, new) in &t.changed {
            let old = if old.is_empty() { "unset" } else { old };
            writeln!(out, "    {name}: {old} -> {new}")?;
        }
    }
    writeln!(
        out,
        "kafka {}: topics {}, {}, {} as configured (retention.ms {} / dead letters {})",
        k.brokers,
        k.events_topic,
        k.security_topic,
        k.dead_letter_topic,
        k.retention_ms,
        k.dead_letter_retention_ms
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
