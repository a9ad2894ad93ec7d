//! `bluetick retention` against the real ClickHouse server: drops exactly the day partitions
//! past each table's retention, changes nothing on a dry run, and is safe to repeat.

mod common;

use bluetick::model::tables::{day_of, yyyymmdd, Table};
use common::*;

const DAY: u64 = 86_400;

/// Partitions of bluetick's tables, as "table/YYYYMMDD" lines.
async fn partitions(cfg: &bluetick::config::Config) -> Vec<String> {
    let sql = format!(
        "SELECT DISTINCT concat(table, '/', partition) FROM system.parts \
         WHERE database = '{}' AND active AND table != 'schema_migrations' ORDER BY 1 FORMAT TSV",
        cfg.clickhouse.database
    );
    ch_text(cfg, &sql)
        .await
        .lines()
        .map(str::to_string)
        .collect()
}

fn part(table: Table, ts: u64) -> String {
    format!("{}/{}", table.name(), yyyymmdd(day_of(ts)))
}

#[tokio::test]
async fn retention_drops_exactly_the_expired_partitions() {
    let mut cfg = config();
    cfg.clickhouse.url = clickhouse_url();
    migrate(&cfg).await;
    let now = now_secs();
    let ago = |days: u64| now - days * DAY;
    let insert = |table: Table, ts: u64| {
        let cols = if table == Table::SecurityEvent {
            "ts, source_ip"
        } else {
            "ts, event_id"
        };
        format!(
            "INSERT INTO {} ({cols}) VALUES (toDateTime({ts}), 'x')",
            table.name()
        )
    };
    let rows = [
        (Table::MessageStatus, ago(100)),
        (Table::MessageStatus, ago(95)),
        (Table::MessageStatus, ago(89)),
        (Table::MessageStatus, now),
        (Table::InboundMessage, ago(91)),
        (Table::InboundMessage, ago(10)),
        (Table::AccountEvent, now),
        (Table::SecurityEvent, ago(190)),
        (Table::SecurityEvent, ago(170)),
    ];
    for (table, ts) in rows {
        ch_text(&cfg, &insert(table, ts)).await;
    }
    let before = partitions(&cfg).await;
    assert_eq!(before.len(), rows.len());
    let expired = [
        part(Table::MessageStatus, ago(100)),
        part(Table::MessageStatus, ago(95)),
        part(Table::InboundMessage, ago(91)),
        part(Table::SecurityEvent, ago(190)),
    ];

    let mut out = Vec::new();
    let dry = bluetick::retention::run(&cfg, true, &mut out)
        .await
        .expect("dry run");
    let listed: Vec<String> = dry
        .dropped
        .iter()
        .map(|p| format!("{}/{}", p.table.name(), p.id))
        .collect();
    let mut sorted = listed.clone();
    sorted.sort();
    let mut want = expired.to_vec();
    want.sort();
    assert_eq!(sorted, want);
    assert_eq!(dry.kept, rows.len() - expired.len());
    let text = String::from_utf8(out).expect("utf-8");
    assert_eq!(
        text.matches("would drop").count(),
        expired.len() + 1,
        "{text}"
    );
    assert_eq!(partitions(&cfg).await, before, "a dry run changes nothing");

    let mut out = Vec::new();
    let done = bluetick::retention::run(&cfg, false, &mut out)
        .await
        .expect("retention");
    assert_eq!(done.dropped, dry.dropped);
    let after = partitions(&cfg).await;
    let mut kept: Vec<String> = before
        .iter()
        .filter(|p| !expired.contains(p))
        .cloned()
        .collect();
    kept.sort();
    assert_eq!(after, kept);
    let text = String::from_utf8(out).expect("utf-8");
    assert!(
        text.contains("retention: dropped 4 partitions (4 rows)"),
        "{text}"
    );

    // Cron may run it again at any time: nothing left to do.
    let again = bluetick::retention::run(&cfg, false, &mut Vec::new())
        .await
        .expect("repeat");
    assert!(again.dropped.is_empty());
    assert_eq!(partitions(&cfg).await, kept);
    drop_database(&cfg).await;
}

#[test]
fn the_binary_reports_a_dry_run_from_environment_variables() {
    let mut cfg = config();
    cfg.clickhouse.url = clickhouse_url();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        migrate(&cfg).await;
        let old = now_secs() - 200 * DAY;
        ch_text(
            &cfg,
            &format!("INSERT INTO security_event (ts) VALUES (toDateTime({old}))"),
        )
        .await;
    });
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bluetick"))
        .args(["retention", "--dry-run"])
        .env("BLUETICK_CLICKHOUSE_URL", &cfg.clickhouse.url)
        .env("BLUETICK_CLICKHOUSE_DATABASE", &cfg.clickhouse.database)
        .env("BLUETICK_RETENTION_SECURITY_EVENT_DAYS", "150")
        .output()
        .expect("run bluetick");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("would drop"), "{stdout}");
    assert!(stdout.contains("security_event partition"), "{stdout}");
    assert!(stdout.contains("150 days kept"), "{stdout}");
    rt.block_on(drop_database(&cfg));
}
