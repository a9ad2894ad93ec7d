//! The schema and every query bluetick runs give the same answers on Debian's ClickHouse 18.16
//! (the real server the suite starts) and on the current release, which PyPI's `chdb-core`
//! embeds (installed by `scripts/services.sh install`; no server of it reaches these machines).

mod common;

use bluetick::model::rows::{AccountRow, InboundRow, SecurityRow, StatusRow};
use clickhouse::Row;
use common::*;

/// Schema, sample rows (duplicated, out of order, over two days), then the queries of the
/// dashboards' views, the sink's deduplicated count and retention's partition listing and drop.
fn script(database: &str) -> Vec<String> {
    let mut sql = common::chdb::schema_statements();
    sql.push(SAMPLE_STATUSES_SQL.into());
    sql.push("INSERT INTO inbound_message (event_id, ts, message_id, message_type) VALUES ('i1', 1750000000, 'x', 'text')".into());
    sql.push("INSERT INTO security_event (ts, source_ip, reason) VALUES (1750000000, '10.0.0.1', 'bad_signature')".into());
    sql.push("SELECT count() FROM message_status FINAL".into());
    sql.push(
        "SELECT message_id, status, last_ts FROM message_latest_status ORDER BY message_id".into(),
    );
    sql.push(
        "SELECT day, phone_number_id, pricing_category, messages, sent, delivered, read, failed, \
         billable FROM daily_funnel ORDER BY day, phone_number_id, pricing_category"
            .into(),
    );
    // Export and erase: the person's rows once each, the tables that hold people, a delete
    // mutation and the mutation status erase polls.
    sql.push(
        "SELECT message_id, status FROM message_status FINAL WHERE person_hash IN ('h1') \
         ORDER BY ts, event_id"
            .into(),
    );
    sql.push(format!(
        "SELECT name, engine FROM system.tables WHERE database = '{database}' \
         AND name != 'erasure_audit' AND engine LIKE '%MergeTree%' AND name IN \
         (SELECT table FROM system.columns WHERE database = '{database}' \
         AND name = 'person_hash') ORDER BY name"
    ));
    sql.push("ALTER TABLE inbound_message DELETE WHERE person_hash IN ('h9')".into());
    sql.push(format!(
        "SELECT count() FROM system.mutations WHERE database = '{database}' \
         AND table = 'message_status' AND is_done = 0"
    ));
    // Row counts per part are left out: current ClickHouse already collapses duplicates
    // within one INSERT (`optimize_on_insert`), 18.16 only on merge.
    let partitions = format!(
        "SELECT table, partition FROM ({})",
        bluetick::clickhouse::LIST_PARTITIONS_SQL.replace('?', &format!("'{database}'"))
    );
    sql.push(partitions.clone());
    sql.push("ALTER TABLE message_status DROP PARTITION 20250615".into());
    sql.push(partitions);
    sql.push(format!(
        "SELECT table, name, type FROM system.columns WHERE database = '{database}' \
         ORDER BY table, name"
    ));
    sql
}

#[tokio::test]
async fn schema_and_queries_agree_on_clickhouse_18_16_and_current() {
    let mut cfg = config();
    cfg.clickhouse.url = clickhouse_url();
    let db = cfg.clickhouse.database.clone();
    let statements = script(&db);

    let server = run_on_server(&cfg, &statements).await;
    let current = tokio::task::spawn_blocking(move || chdb::run(&db, &statements))
        .await
        .expect("chdb thread");

    let selects = script(&cfg.clickhouse.database);
    for (i, sql) in selects.iter().enumerate() {
        if sql.starts_with("SELECT") {
            assert_eq!(server[i], current[i], "answers differ for: {sql}");
        }
    }
    // And the answers are the right ones (on both, since they agree).
    let at = |prefix: &str| {
        let i = selects
            .iter()
            .position(|s| s.starts_with(prefix))
            .expect("query");
        server[i].clone()
    };
    assert_eq!(at("SELECT count() FROM message_status FINAL"), "6\n");
    assert_eq!(
        at("SELECT message_id, status"),
        "m1\tread\t2025-06-15 15:11:40\nm2\tfailed\t2025-06-15 15:09:10\nm3\tsent\t2025-06-16 16:06:40\n"
    );
    assert_eq!(
        at("SELECT day"),
        "2025-06-15\tp1\tmarketing\t1\t1\t0\t0\t1\t1\n\
         2025-06-15\tp1\tutility\t1\t1\t1\t1\t0\t1\n\
         2025-06-16\tp2\tutility\t1\t1\t0\t0\t0\t0\n"
    );
    assert_eq!(
        at("SELECT message_id, status FROM message_status FINAL"),
        "m1\tsent\nm1\tdelivered\nm1\tread\n"
    );
    assert_eq!(
        at("SELECT name, engine"),
        "call_event\tReplacingMergeTree\ninbound_message\tReplacingMergeTree\n\
         message_status\tReplacingMergeTree\nopt_out\tReplacingMergeTree\n"
    );
    let n = selects.len();
    assert_eq!(
        server[n - 4],
        "inbound_message\t20250615\nmessage_status\t20250615\nmessage_status\t20250616\n\
         security_event\t20250615\n"
    );
    assert_eq!(
        server[n - 2],
        "inbound_message\t20250615\nmessage_status\t20250616\nsecurity_event\t20250615\n"
    );

    // Every column the sink writes exists on both versions.
    let columns = &server[n - 1];
    let sink_rows: [(&str, &[&str]); 4] = [
        ("message_status", <StatusRow<'static> as Row>::COLUMN_NAMES),
        (
            "inbound_message",
            <InboundRow<'static> as Row>::COLUMN_NAMES,
        ),
        ("account_event", <AccountRow<'static> as Row>::COLUMN_NAMES),
        (
            "security_event",
            <SecurityRow<'static> as Row>::COLUMN_NAMES,
        ),
    ];
    for (table, names) in sink_rows {
        for name in names {
            let line = format!("{table}\t{name}\t");
            assert!(columns.contains(&line), "{table}.{name} missing");
        }
    }
    drop_database(&cfg).await;
}
