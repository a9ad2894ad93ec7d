//! The ClickHouse side every component shares: one client constructor, one way to quote
//! identifiers and literals, one error type with ClickHouse's error code parsed once, and the
//! queries of the live schema that several commands read (day partitions, tables that hold
//! people, pending mutations). On a cluster ([`cluster`]) the same calls reach every shard.
//!
//! Invariant: no SQL text built here or by a caller inlines a name or value unquoted; names go
//! through [`quote_ident`], values through [`quote_literal`] or a bound `?`.

pub mod cluster;

use crate::config::{ClickHouseConfig, ConfigError, WireCompression};
use crate::model::tables::{ERASURE_AUDIT, PERSON_COLUMNS};
use crate::privacy::PersonHash;
use serde::Deserialize;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Error codes with which ClickHouse says "this data is wrong" rather than "I cannot take it
/// now" (`src/Common/ErrorCodes.cpp`). Only these lead the sink to bisect and dead-letter;
/// every other failure is retried, so an unknown error can delay rows but never discard them.
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

/// Codes that mean the schema is not there (yet): UNKNOWN_TABLE, UNKNOWN_DATABASE,
/// NO_SUCH_COLUMN_IN_TABLE, THERE_IS_NO_COLUMN.
const MISSING_SCHEMA_CODES: &[u32] = &[60, 81, 16, 8];

/// A failed ClickHouse call, with where it went and ClickHouse's error code when it sent one.
#[derive(Debug, thiserror::Error)]
#[error("clickhouse at {url}: {message}{}", self.hint())]
pub struct ClickHouseError {
    url: String,
    code: Option<u32>,
    /// The row failed to serialize on our side: its own fault, never ClickHouse's state.
    local: bool,
    message: String,
}

/// ClickHouse's codes for refused credentials: REQUIRED_PASSWORD, WRONG_PASSWORD,
/// UNKNOWN_USER, AUTHENTICATION_FAILED, IP_ADDRESS_NOT_ALLOWED.
const AUTH_CODES: &[u32] = &[192, 193, 194, 516, 195];

impl ClickHouseError {
    pub fn new(url: &str, e: ::clickhouse::error::Error) -> Self {
        use ::clickhouse::error::Error as E;
        let local = matches!(
            e,
            E::Custom(_) | E::InvalidUtf8Encoding(_) | E::SequenceMustHaveLength
        );
        let text = e.to_string();
        // The causes say what the top line does not (a refused certificate under "client
        // error (Connect)").
        let mut message = first_line(&text);
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            let cause_text = first_line(&cause.to_string());
            if !message.contains(&cause_text) {
                message = format!("{message}: {cause_text}");
            }
            source = cause.source();
        }
        ClickHouseError {
            url: url.to_string(),
            code: exception_code(&text),
            local,
            message,
        }
    }

    /// ClickHouse's error code (`Code: N` in its answer), if it sent one.
    pub fn code(&self) -> Option<u32> {
        self.code
    }

    /// The rows themselves are wrong: retrying them cannot succeed.
    pub fn is_content(&self) -> bool {
        self.local || self.code.is_some_and(|c| CONTENT_ERROR_CODES.contains(&c))
    }

    /// A table, column or database is missing: the schema was not migrated.
    pub fn is_missing_schema(&self) -> bool {
        self.code.is_some_and(|c| MISSING_SCHEMA_CODES.contains(&c))
    }

    /// The first line of what ClickHouse (or the client) said.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The server's certificate was refused (or TLS could not be set up): a setting is
    /// wrong, not a passing outage.
    pub fn is_tls(&self) -> bool {
        let m = self.message.to_ascii_lowercase();
        [
            "certificate",
            "tls",
            "handshake",
            "unknownissuer",
            "notvalidforname",
        ]
        .iter()
        .any(|w| m.contains(w))
    }

    /// The credentials were refused.
    pub fn is_auth(&self) -> bool {
        self.code.is_some_and(|c| AUTH_CODES.contains(&c))
    }

    /// A wrong setting (TLS, credentials, config) rather than an outage: retrying cannot help.
    pub fn is_fatal(&self) -> bool {
        self.is_tls() || self.is_auth()
    }

    fn hint(&self) -> &'static str {
        if self.is_tls() {
            " (check clickhouse.ca_file: the CA that signed the server's certificate, and the \
             host name in clickhouse.url)"
        } else if self.is_auth() {
            " (check clickhouse.user and clickhouse.password(_file))"
        } else if self.is_missing_schema() {
            " (has `bluetick migrate` run?)"
        } else {
            ""
        }
    }

    /// A setting that keeps a client from being built.
    pub fn config(url: &str, e: ConfigError) -> Self {
        ClickHouseError {
            url: url.to_string(),
            code: None,
            local: false,
            message: e.to_string(),
        }
    }
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

/// A client for `cfg` without a default database. Validation is off because ClickHouse 18.16
/// rejects the schema-fetching format and setting it relies on. An `https://` URL is verified
/// against `clickhouse.ca_file` when set, the public web roots otherwise; there is no fallback
/// to plaintext.
pub fn client(cfg: &ClickHouseConfig) -> Result<::clickhouse::Client, ConfigError> {
    let base = if cfg.ca_file.is_empty() {
        ::clickhouse::Client::default()
    } else {
        https_client(&cfg.ca_file)?
    };
    Ok(base
        .with_url(&cfg.url)
        .with_user(&cfg.user)
        .with_password(cfg.password()?.expose())
        .with_validation(false)
        .with_compression(wire_compression(cfg.compression)))
}

fn wire_compression(c: WireCompression) -> ::clickhouse::Compression {
    match c {
        WireCompression::Lz4 => ::clickhouse::Compression::Lz4,
        WireCompression::None => ::clickhouse::Compression::None,
    }
}

/// A client whose HTTPS trusts exactly the CA certificates (PEM) in `ca_file`.
fn https_client(ca_file: &str) -> Result<::clickhouse::Client, ConfigError> {
    use rustls_pki_types::pem::PemObject;
    let bad = |reason: String| ConfigError::Invalid {
        key: "clickhouse.ca_file",
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| bad(format!("cannot read {ca_file}: {e}")))?;
    for cert in certs {
        let cert = cert.map_err(|e| bad(format!("{ca_file}: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("{ca_file}: not a CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad(format!("{ca_file} holds no certificate")));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_keepalive(Some(Duration::from_secs(60)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let http_client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(2))
            .build(https);
    Ok(::clickhouse::Client::with_http_client(http_client))
}

/// Backquoted identifier, so any database or table name is taken literally.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

/// Single-quoted string literal with ClickHouse's escapes.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `'a', 'b', …` for an `IN (…)` list.
pub fn literal_list<S: AsRef<str>>(values: &[S]) -> String {
    let mut out = String::with_capacity(values.len() * 68);
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{}", quote_literal(v.as_ref()));
    }
    out
}

/// Active partitions per table of a database (`?`), with their rows.
pub const LIST_PARTITIONS_SQL: &str = "SELECT t AS table, partition, rows FROM (\
     SELECT replaceRegexpOne(table, '_local$', '') AS t, partition, sum(rows) AS rows \
     FROM system.parts WHERE database = ? AND active GROUP BY t, partition) \
     ORDER BY table, partition";

/// `'h1', 'h2', …`: keyed hashes as an `IN (…)` list (hex only, nothing to escape).
pub fn hash_list(hashes: &[PersonHash]) -> String {
    let hex: Vec<_> = hashes.iter().map(|h| h.to_hex()).collect();
    let texts: Vec<&str> = hex.iter().map(|h| h.as_str()).collect();
    literal_list(&texts)
}

/// One database on one server, as the commands use it.
#[derive(Clone)]
pub struct ClickHouse {
    client: ::clickhouse::Client,
    server: ::clickhouse::Client,
    url: String,
    database: String,
    /// `clickhouse.cluster`; empty = one server.
    cluster: String,
    /// What the clients compress inserts with (callers that compress a chunk themselves
    /// must use the same).
    compression: ::clickhouse::Compression,
}

/// One day partition of one table, as `system.parts` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ::clickhouse::Row)]
pub struct PartitionRow {
    pub table: String,
    /// `toYYYYMMDD(ts)` as text, possibly quoted by old servers.
    pub partition: String,
    pub rows: u64,
}

/// A streamed copy failed on the server's side or on the writer's.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    ClickHouse(#[from] ClickHouseError),
    #[error("writing: {0}")]
    Io(#[from] std::io::Error),
}

/// A table that holds rows about people (it has a `person_hash` column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeopleTable {
    pub name: String,
    pub engine: String,
    /// Which of [`PERSON_COLUMNS`] it has, in that order.
    pub columns: Vec<&'static str>,
}

/// Identifiers per query in [`PeopleTable::any_of`] lists: three lists of 1,000 hashes stay
/// under ClickHouse's default `max_query_size` (256 KiB).
pub const IDENTIFIERS_PER_QUERY: usize = 1_000;

impl PeopleTable {
    /// `(person_hash IN (…) OR user_hash IN (…) …)` over the identifier columns it has;
    /// `set` is a literal list or a subquery.
    pub fn any_of(&self, set: &str) -> String {
        let terms: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("{c} IN ({set})"))
            .collect();
        format!("({})", terms.join(" OR "))
    }

    /// `FINAL` where the engine collapses duplicates, so a row delivered twice reads once.
    pub fn final_clause(&self) -> &'static str {
        if self.engine.contains("Replacing") {
            " FINAL"
        } else {
            ""
        }
    }
}

impl ClickHouse {
    pub fn new(cfg: &ClickHouseConfig) -> Result<Self, ClickHouseError> {
        let mut server = client(cfg).map_err(|e| ClickHouseError::config(&cfg.url, e))?;
        if !cfg.cluster.is_empty() {
            // An insert into a Distributed table returns once every shard stored its rows,
            // not when they were queued on this server: the sink commits offsets after it.
            server = server.with_setting("insert_distributed_sync", "1");
        }
        Ok(ClickHouse {
            client: server.clone().with_database(&cfg.database),
            server,
            url: cfg.url.clone(),
            database: cfg.database.clone(),
            cluster: cfg.cluster.clone(),
            compression: wire_compression(cfg.compression),
        })
    }

    /// A round trip to the server: start-up's check that the URL, TLS and credentials work.
    pub async fn check(&self) -> Result<(), ClickHouseError> {
        self.server
            .query("SELECT 1")
            .fetch_one::<u8>()
            .await
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    /// How inserts are compressed on the wire.
    pub fn compression(&self) -> ::clickhouse::Compression {
        self.compression
    }

    /// The client, in this database.
    pub fn client(&self) -> &::clickhouse::Client {
        &self.client
    }

    /// The client without a default database (to create it).
    pub fn server(&self) -> &::clickhouse::Client {
        &self.server
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Wraps a client error with where it happened.
    pub fn error(&self, e: ::clickhouse::error::Error) -> ClickHouseError {
        ClickHouseError::new(&self.url, e)
    }

    /// The cluster the schema lives on, if any (see [`cluster`]).
    pub fn cluster(&self) -> Option<&str> {
        Some(self.cluster.as_str()).filter(|c| !c.is_empty())
    }

    /// What an `ALTER TABLE` (a mutation, a partition drop) names to change `table` everywhere
    /// it is stored: the table itself on one server; on a cluster, a sharded table's local
    /// tables `ON CLUSTER` (a `Distributed` table holds no rows), and a table replicated to
    /// every server by its name (replication carries the change).
    pub fn alter_target(&self, table: &str) -> String {
        match self.cluster() {
            Some(c) if crate::model::Table::from_name(table).is_some() => format!(
                "{} ON CLUSTER {}",
                self.table(&cluster::local_name(table)),
                quote_ident(c)
            ),
            _ => self.table(table),
        }
    }

    /// `host:port` of the cluster's servers for `remote()`: each shard's replicas joined by `|`
    /// (one replica per shard is read), or with `every_replica` all of them comma-separated
    /// (each server is read).
    async fn addresses(&self, every_replica: bool) -> Result<String, ClickHouseError> {
        let rows: Vec<(u32, String, u16)> = self
            .client
            .query(
                "SELECT shard_num, host_address, port FROM system.clusters WHERE cluster = ? \
                 ORDER BY shard_num, replica_num",
            )
            .bind(&self.cluster)
            .fetch_all()
            .await
            .map_err(|e| self.error(e))?;
        if rows.is_empty() {
            return Err(ClickHouseError {
                url: self.url.clone(),
                code: None,
                local: true,
                message: format!(
                    "cluster {} is not in the server's remote_servers",
                    quote_literal(&self.cluster)
                ),
            });
        }
        let mut out = String::new();
        for (i, (shard, host, port)) in rows.iter().enumerate() {
            if i > 0 {
                let same_shard = rows[i - 1].0 == *shard;
                out.push(if same_shard && !every_replica {
                    '|'
                } else {
                    ','
                });
            }
            out.push_str(&format!("{host}:{port}"));
        }
        Ok(out)
    }

    /// A system table (`parts`, `mutations`) as a `FROM` source: of this server, or of every
    /// server of the cluster (`every_replica`) or one replica per shard.
    pub async fn system_table(
        &self,
        name: &str,
        every_replica: bool,
    ) -> Result<String, ClickHouseError> {
        match self.cluster() {
            None => Ok(format!("system.{}", quote_ident(name))),
            Some(_) => Ok(format!(
                "remote({}, system, {})",
                quote_literal(&self.addresses(every_replica).await?),
                quote_ident(name)
            )),
        }
    }

    /// `table`'s rows on every replica of every shard, as a `FROM` source: the check that a
    /// deletion reached each copy. On one server, the table.
    pub async fn every_copy(&self, table: &str) -> Result<String, ClickHouseError> {
        let Some(_) = self.cluster() else {
            return Ok(quote_ident(table));
        };
        let stored = match crate::model::Table::from_name(table) {
            Some(_) => cluster::local_name(table),
            None => table.to_string(),
        };
        Ok(format!(
            "remote({}, {}, {})",
            quote_literal(&self.addresses(true).await?),
            quote_ident(&self.database),
            quote_ident(&stored)
        ))
    }

    /// `` `database`.`table` ``.
    pub fn table(&self, name: &str) -> String {
        format!("{}.{}", quote_ident(&self.database), quote_ident(name))
    }

    /// Runs a statement that returns nothing.
    pub async fn execute(&self, sql: &str) -> Result<(), ClickHouseError> {
        self.client
            .query(sql)
            .execute()
            .await
            .map_err(|e| self.error(e))
    }

    /// Every row of `sql` as `T`.
    pub async fn fetch_all<T>(&self, sql: &str) -> Result<Vec<T>, ClickHouseError>
    where
        T: ::clickhouse::RowOwned + ::clickhouse::RowRead,
    {
        self.client
            .query(sql)
            .fetch_all()
            .await
            .map_err(|e| self.error(e))
    }

    /// The answer of `sql` in ClickHouse's `format`, as bytes.
    pub async fn fetch_bytes(&self, sql: &str, format: &str) -> Result<Vec<u8>, ClickHouseError> {
        let mut cursor = self
            .client
            .query(sql)
            .fetch_bytes(format)
            .map_err(|e| self.error(e))?;
        cursor
            .collect()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| self.error(e))
    }

    /// Streams the answer to `sql` in `format` into `out` as it arrives (never held whole);
    /// returns the bytes written.
    pub async fn copy_bytes(
        &self,
        sql: &str,
        format: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<u64, CopyError> {
        let mut cursor = self
            .client
            .query(sql)
            .fetch_bytes(format)
            .map_err(|e| self.error(e))?;
        let mut written = 0u64;
        while let Some(chunk) = cursor.next().await.map_err(|e| self.error(e))? {
            out.write_all(&chunk)?;
            written += chunk.len() as u64;
        }
        Ok(written)
    }

    /// MergeTree tables of the database that hold events (an `event_id` column) of a tenant (a
    /// `tenant` column). The daily aggregates have a tenant but no events: they are counts
    /// derived from these tables, not a client's data of their own.
    pub async fn tenant_tables(&self) -> Result<Vec<String>, ClickHouseError> {
        self.client
            .query(
                "SELECT replaceRegexpOne(name, '_local$', '') AS t FROM system.tables \
                 WHERE database = ? AND engine LIKE '%MergeTree%' AND name IN (SELECT table FROM system.columns WHERE database = ? \
                 AND name = 'tenant') AND name IN (SELECT table FROM system.columns \
                 WHERE database = ? AND name = 'event_id') ORDER BY t",
            )
            .bind(&self.database)
            .bind(&self.database)
            .bind(&self.database)
            .fetch_all()
            .await
            .map_err(|e| self.error(e))
    }

    /// Active partitions of every table of the database, with their rows; on a cluster, of
    /// every shard, under the names readers use (`<table>_local` → `<table>`).
    pub async fn partitions(&self) -> Result<Vec<PartitionRow>, ClickHouseError> {
        let sql =
            LIST_PARTITIONS_SQL.replace("system.parts", &self.system_table("parts", false).await?);
        self.client
            .query(&sql)
            .bind(&self.database)
            .fetch_all()
            .await
            .map_err(|e| self.error(e))
    }

    /// MergeTree tables of the database that have a `person_hash` column, except the erasure
    /// audit, with the identifier columns each has. Read from the live schema, so a table
    /// added later is covered without a code change; views hold no rows of their own.
    pub async fn people_tables(&self) -> Result<Vec<PeopleTable>, ClickHouseError> {
        let tables: Vec<(String, String)> = self
            .client
            .query(
                "SELECT replaceRegexpOne(name, '_local$', '') AS t, engine FROM system.tables \
                 WHERE database = ? AND name != ? \
                 AND engine LIKE '%MergeTree%' AND name IN (SELECT table FROM system.columns \
                 WHERE database = ? AND name = 'person_hash') ORDER BY t",
            )
            .bind(&self.database)
            .bind(ERASURE_AUDIT)
            .bind(&self.database)
            .fetch_all()
            .await
            .map_err(|e| self.error(e))?;
        let sql = format!(
            "SELECT table, name FROM system.columns WHERE database = ? AND name IN ({})",
            literal_list(&PERSON_COLUMNS)
        );
        let columns: Vec<(String, String)> = self
            .client
            .query(&sql)
            .bind(&self.database)
            .fetch_all()
            .await
            .map_err(|e| self.error(e))?;
        Ok(tables
            .into_iter()
            .map(|(name, engine)| PeopleTable {
                columns: PERSON_COLUMNS
                    .into_iter()
                    .filter(|c| columns.iter().any(|(t, n)| *t == name && n == c))
                    .collect(),
                name,
                engine,
            })
            .collect())
    }

    /// Every identifier hash linked to `start` in `tables`: a row that carries one of a
    /// person's identifiers names the others it carries (a number with a user id, a user id
    /// with its parent), so the set grows until no row adds one. That is how rows that carry
    /// only a user id are found from a phone number, and the reverse.
    pub async fn linked_identifiers(
        &self,
        tables: &[PeopleTable],
        start: &[PersonHash],
    ) -> Result<Vec<PersonHash>, ClickHouseError> {
        let mut known: std::collections::BTreeSet<PersonHash> = start.iter().copied().collect();
        let mut frontier: Vec<PersonHash> = known.iter().copied().collect();
        while !frontier.is_empty() {
            let mut found = Vec::new();
            for table in tables.iter().filter(|t| t.columns.len() > 1) {
                for chunk in frontier.chunks(IDENTIFIERS_PER_QUERY) {
                    let sql = format!(
                        "SELECT DISTINCT h FROM (SELECT arrayJoin([{}]) AS h FROM {} WHERE {}) \
                         WHERE h != ''",
                        table.columns.join(", "),
                        quote_ident(&table.name),
                        table.any_of(&hash_list(chunk))
                    );
                    let hashes: Vec<String> = self.fetch_all(&sql).await?;
                    found.extend(hashes.iter().filter_map(|h| PersonHash::from_hex(h)));
                }
            }
            frontier = found.into_iter().filter(|h| known.insert(*h)).collect();
        }
        Ok(known.into_iter().collect())
    }

    /// Column names of `table`, in order (`DESCRIBE`: 18.16's `system.columns` has no
    /// position column).
    pub async fn columns(&self, table: &str) -> Result<Vec<String>, ClickHouseError> {
        let sql = format!("DESCRIBE TABLE {}", quote_ident(table));
        let bytes = self.fetch_bytes(&sql, "TSV").await?;
        Ok(String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| l.split('\t').next())
            .map(str::to_string)
            .collect())
    }

    /// Polls `system.mutations` until `table` has none left to do; false once `timeout` passed.
    pub async fn wait_for_mutations(
        &self,
        table: &str,
        timeout: Duration,
    ) -> Result<bool, ClickHouseError> {
        let deadline = Instant::now() + timeout;
        let sql = format!(
            "SELECT count() FROM {} WHERE database = ? AND table = ? AND is_done = 0",
            self.system_table("mutations", true).await?
        );
        let stored = match (self.cluster(), crate::model::Table::from_name(table)) {
            (Some(_), Some(_)) => cluster::local_name(table),
            _ => table.to_string(),
        };
        loop {
            let pending: u64 = self
                .client
                .query(&sql)
                .bind(&self.database)
                .bind(&stored)
                .fetch_one()
                .await
                .map_err(|e| self.error(e))?;
            if pending == 0 {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::clickhouse::error::Error as E;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident("bluetick"), "`bluetick`");
        assert_eq!(quote_ident("a`b"), "`a\\`b`");
        assert_eq!(quote_literal("it's"), "'it\\'s'");
        assert_eq!(quote_literal("a\\'"), "'a\\\\\\''");
        assert_eq!(literal_list(&["a", "b"]), "'a', 'b'");
        assert_eq!(literal_list::<&str>(&[]), "");
    }

    #[test]
    fn hashes_inline_as_hex_literals_only() {
        let h = crate::privacy::Pepper::new(b"pepper-pepper-pepper").hash_phone("+91 98765 44321");
        let list = hash_list(&[h, h]);
        assert_eq!(list.len(), 2 * 66 + 2);
        assert!(list
            .chars()
            .all(|c| c.is_ascii_hexdigit() || matches!(c, '\'' | ',' | ' ')));
    }

    #[test]
    fn content_errors_are_told_from_outages() {
        let at = |e| ClickHouseError::new("http://ch", e);
        let content = at(E::BadResponse(
            "Code: 395. DB::Exception: Value passed to 'throwIf' function is non zero".into(),
        ));
        assert!(content.is_content() && content.message().contains("throwIf"));
        assert_eq!(content.code(), Some(395));
        let missing = at(E::BadResponse(
            "Code: 60. DB::Exception: Table x doesn't exist".into(),
        ));
        assert!(!missing.is_content() && missing.is_missing_schema());
        assert!(
            missing.to_string().contains("bluetick migrate"),
            "{missing}"
        );
        let timeout = at(E::TimedOut);
        assert!(!timeout.is_content() && timeout.code().is_none());
        assert!(at(E::Custom("bad row".into())).is_content());
        assert_eq!(exception_code("Code: 252, e.displayText() = …"), Some(252));
        assert_eq!(exception_code("no code"), None);
    }
}
