//! The schema on a ClickHouse cluster (`clickhouse.cluster`): the same schema files, each
//! statement rewritten to run `ON CLUSTER` with replicated engines.
//!
//! Two layouts, chosen per table:
//! - **Sharded** (the event tables of [`Table::ALL`]): a replicated `<table>_local` on every
//!   server, keyed in ZooKeeper by `{shard}`, and a `Distributed` table under the table's own
//!   name over them, so that every reader and writer keeps using the one name. The sharding
//!   key is the message (the call for calls): all statuses of one message, and every retry of
//!   one event, meet on one shard, where `ReplacingMergeTree` collapses them and the views'
//!   group-by-message stays exact.
//! - **Everywhere** (everything else: daily aggregates, rate card, erasure audit, the
//!   migration log): one replicated table whose replicas are every server of the cluster. They
//!   are small, and a dashboard's `FINAL`, the spend view's join and the sink's erasure check
//!   then read them locally on whichever server they ask.
//!
//! Invariant: on a cluster, every statement bluetick runs that changes data or schema of a
//! sharded table names `<table>_local ON CLUSTER`; reads use the `Distributed` name.

use crate::clickhouse::quote_ident;
use crate::model::Table;

/// The ZooKeeper path of a replicated table; `{shard}` is each server's macro.
fn zk_path(database: &str, table: &str, everywhere: bool) -> String {
    let shard = if everywhere { "all" } else { "{shard}" };
    format!("/clickhouse/tables/{shard}/{database}/{table}")
}

/// The local table under a sharded table's `Distributed` one.
pub fn local_name(table: &str) -> String {
    format!("{table}_local")
}

/// The sharding key of an event table: its message (or call), so that what must collapse or
/// be grouped together is stored together.
pub fn shard_key(table: Table) -> &'static str {
    match table {
        Table::MessageStatus | Table::InboundMessage => "cityHash64(message_id)",
        Table::CallEvent => "cityHash64(call_id)",
        Table::AccountEvent | Table::OptOut => "cityHash64(event_id)",
        // Security events have no id and nothing to collapse.
        Table::SecurityEvent => "rand()",
    }
}

/// A table sharded across the cluster (`Some(table)`), or replicated to every server.
fn sharded(name: &str) -> Option<Table> {
    Table::from_name(name)
}

/// Rewrites schema statements for one cluster.
pub struct ClusterDdl<'a> {
    pub cluster: &'a str,
    pub database: &'a str,
}

impl ClusterDdl<'_> {
    /// The statements that do on the cluster what `statement` does on one server. Statements
    /// of other shapes are returned unchanged.
    pub fn rewrite(&self, statement: &str) -> Vec<String> {
        let on = format!("ON CLUSTER {}", quote_ident(self.cluster));
        // Names are qualified: each server runs the statement in its own default database.
        let db = |table: &str| format!("{}.{}", quote_ident(self.database), quote_ident(table));
        if let Some(rest) = statement.strip_prefix("CREATE TABLE IF NOT EXISTS ") {
            let (name, body) = split_name(rest);
            return match sharded(name) {
                Some(table) => {
                    let local = local_name(name);
                    vec![
                        format!(
                            "CREATE TABLE IF NOT EXISTS {} {on} {}",
                            db(&local),
                            self.replicated(body, &local, false)
                        ),
                        self.distributed(name, table),
                    ]
                }
                None => vec![format!(
                    "CREATE TABLE IF NOT EXISTS {} {on} {}",
                    db(name),
                    self.replicated(body, name, true)
                )],
            };
        }
        if let Some(rest) = statement.strip_prefix("ALTER TABLE ") {
            let (name, change) = split_name(rest);
            return match sharded(name) {
                // The Distributed table takes the local one's columns when it is created; 18.16
                // refuses to ALTER a non-replicated table on a replicated cluster, so it is
                // created again (it holds no rows; a sink's insert meanwhile fails and is retried).
                Some(table) if change.trim_start().starts_with("ADD COLUMN") => vec![
                    format!("ALTER TABLE {} {on} {change}", db(&local_name(name))),
                    format!("DROP TABLE IF EXISTS {} {on}", db(name)),
                    self.distributed(name, table),
                ],
                Some(_) => vec![format!(
                    "ALTER TABLE {} {on} {change}",
                    db(&local_name(name))
                )],
                None => vec![format!("ALTER TABLE {} {on} {change}", db(name))],
            };
        }
        for view in [
            "CREATE VIEW IF NOT EXISTS ",
            "CREATE MATERIALIZED VIEW IF NOT EXISTS ",
        ] {
            if let Some(rest) = statement.strip_prefix(view) {
                let (name, body) = split_name(rest);
                let body = qualify_sources(body, self.database);
                return vec![format!("{view}{} {on} {body}", db(name))];
            }
        }
        vec![statement.to_string()]
    }

    /// The `Distributed` table `name` over the local tables of `table`.
    fn distributed(&self, name: &str, table: Table) -> String {
        let local = local_name(name);
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{n} ON CLUSTER {c} AS {db}.{l} ENGINE = \
             Distributed({c}, {db}, {l}, {key})",
            db = quote_ident(self.database),
            n = quote_ident(name),
            l = quote_ident(&local),
            c = quote_ident(self.cluster),
            key = shard_key(table)
        )
    }

    /// `body` (columns, engine, keys) with its `*MergeTree` engine made `Replicated*`.
    fn replicated(&self, body: &str, table: &str, everywhere: bool) -> String {
        let Some(at) = body.find("ENGINE = ") else {
            return body.to_string();
        };
        let engine_at = at + "ENGINE = ".len();
        let tail = &body[engine_at..];
        let name_len = tail
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(tail.len());
        let engine = &tail[..name_len];
        if !engine.ends_with("MergeTree") || engine.starts_with("Replicated") {
            return body.to_string();
        }
        let replica = if everywhere {
            "{shard}_{replica}"
        } else {
            "{replica}"
        };
        let zk = format!(
            "'{}', '{replica}'",
            zk_path(self.database, table, everywhere)
        );
        let after = &tail[name_len..];
        let (args, rest) = match after.strip_prefix('(') {
            Some(a) => match a.find(')') {
                Some(close) if a[..close].trim().is_empty() => (String::new(), &a[close + 1..]),
                Some(close) => (format!(", {}", &a[..close]), &a[close + 1..]),
                None => (String::new(), after),
            },
            None => (String::new(), after),
        };
        format!(
            "{}ENGINE = Replicated{engine}({zk}{args}){rest}",
            &body[..at]
        )
    }
}

/// `query` with every table it reads (`FROM t`, `JOIN t`) qualified by `database`: a view
/// created `ON CLUSTER` is checked on each server in that server's default database.
fn qualify_sources(query: &str, database: &str) -> String {
    let mut out = String::with_capacity(query.len() + 64);
    let mut rest = query;
    while let Some(at) = next_source(rest) {
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let (name, tail) = after.split_at(end);
        let is_call = tail.starts_with('(');
        let is_qualified = tail.starts_with('.');
        if name.is_empty() || is_call || is_qualified {
            out.push_str(name);
        } else {
            out.push_str(&format!("{}.{}", quote_ident(database), quote_ident(name)));
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Where the name after the next `FROM ` or `JOIN ` starts.
fn next_source(text: &str) -> Option<usize> {
    ["FROM ", "JOIN "]
        .iter()
        .filter_map(|k| text.find(k).map(|at| at + k.len()))
        .min()
        .map(|at| at + text[at..].len() - text[at..].trim_start().len())
}

/// `name rest…` → (`name`, `rest…`).
fn split_name(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| c.is_whitespace() || c == '(')
        .unwrap_or(text.len());
    (&text[..end], text[end..].trim_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ddl() -> ClusterDdl<'static> {
        ClusterDdl {
            cluster: "bluetick",
            database: "bt",
        }
    }

    #[test]
    fn an_event_table_becomes_a_replicated_local_table_and_a_distributed_one() {
        let out = ddl().rewrite(
            "CREATE TABLE IF NOT EXISTS message_status (\n    ts DateTime('UTC'),\n    \
             received_ms UInt64\n) ENGINE = ReplacingMergeTree(received_ms)\nPARTITION BY \
             toYYYYMMDD(ts)\nORDER BY (ts)",
        );
        assert_eq!(out.len(), 2);
        assert!(out[0].starts_with(
            "CREATE TABLE IF NOT EXISTS `bt`.`message_status_local` ON CLUSTER `bluetick` (\n"
        ));
        assert!(out[0].contains(
            "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/bt/\
             message_status_local', '{replica}', received_ms)\nPARTITION BY"
        ));
        assert_eq!(
            out[1],
            "CREATE TABLE IF NOT EXISTS `bt`.`message_status` ON CLUSTER `bluetick` AS \
             `bt`.`message_status_local` ENGINE = Distributed(`bluetick`, `bt`, \
             `message_status_local`, cityHash64(message_id))"
        );
    }

    #[test]
    fn small_tables_are_replicated_to_every_server() {
        let out = ddl().rewrite(
            "CREATE TABLE IF NOT EXISTS erasure_audit (a String) ENGINE = MergeTree\nORDER BY a",
        );
        assert_eq!(
            out,
            ["CREATE TABLE IF NOT EXISTS `bt`.`erasure_audit` ON CLUSTER `bluetick` (a String) ENGINE = \
              ReplicatedMergeTree('/clickhouse/tables/all/bt/erasure_audit', \
              '{shard}_{replica}')\nORDER BY a"]
        );
    }

    #[test]
    fn alters_and_views_run_on_the_cluster() {
        assert_eq!(
            ddl().rewrite("ALTER TABLE inbound_message ADD COLUMN x String"),
            [
                "ALTER TABLE `bt`.`inbound_message_local` ON CLUSTER `bluetick` ADD COLUMN x String",
                "DROP TABLE IF EXISTS `bt`.`inbound_message` ON CLUSTER `bluetick`",
                "CREATE TABLE IF NOT EXISTS `bt`.`inbound_message` ON CLUSTER `bluetick` AS \
                 `bt`.`inbound_message_local` ENGINE = Distributed(`bluetick`, `bt`, \
                 `inbound_message_local`, cityHash64(message_id))"
            ]
        );
        assert_eq!(
            ddl().rewrite("ALTER TABLE message_status DELETE WHERE 1"),
            ["ALTER TABLE `bt`.`message_status_local` ON CLUSTER `bluetick` DELETE WHERE 1"]
        );
        assert_eq!(
            ddl().rewrite("CREATE VIEW IF NOT EXISTS daily_funnel AS SELECT 1"),
            ["CREATE VIEW IF NOT EXISTS `bt`.`daily_funnel` ON CLUSTER `bluetick` AS SELECT 1"]
        );
    }

    #[test]
    fn views_read_their_tables_in_the_database() {
        assert_eq!(
            qualify_sources(
                "SELECT a FROM (SELECT a FROM message_status FINAL) AS x \
                 JOIN rate_card_daily USING (a) WHERE b IN (SELECT 1 FROM system.one)",
                "bt"
            ),
            "SELECT a FROM (SELECT a FROM `bt`.`message_status` FINAL) AS x \
             JOIN `bt`.`rate_card_daily` USING (a) WHERE b IN (SELECT 1 FROM system.one)"
        );
    }

    #[test]
    fn every_schema_statement_is_rewritten_to_run_on_the_cluster() {
        for m in crate::migrate::MIGRATIONS {
            for s in m.statements() {
                for out in ddl().rewrite(&s) {
                    assert!(out.contains("ON CLUSTER"), "{}: {out}", m.name);
                    if out.contains("MergeTree") {
                        assert!(out.contains("ENGINE = Replicated"), "{}: {out}", m.name);
                    }
                }
            }
        }
    }
}
