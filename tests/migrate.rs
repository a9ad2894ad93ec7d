//! `bluetick migrate` against the real ClickHouse server: creates everything once, is safe to
//! repeat, refuses a changed applied file, and its views answer.

mod common;

use bluetick::migrate::{self, MIGRATIONS};
use common::*;

async fn tables(cfg: &bluetick::config::Config) -> Vec<String> {
    bluetick::clickhouse::client(&cfg.clickhouse)
        .expect("clickhouse client")
        .query("SELECT name FROM system.tables WHERE database = ? ORDER BY name")
        .bind(&cfg.clickhouse.database)
        .fetch_all::<String>()
        .await
        .expect("system.tables")
}

#[tokio::test]
async fn migrate_creates_the_schema_once_and_is_safe_to_repeat() {
    let mut cfg = config();
    cfg.clickhouse.url = clickhouse_url();
    let mut out = Vec::new();
    assert_eq!(
        migrate::run(&cfg, &mut out).await.expect("first run"),
        MIGRATIONS.len()
    );
    assert_eq!(
        tables(&cfg).await,
        [
            "account_event",
            "call_daily",
            "call_event",
            "daily_funnel",
            "erasure_audit",
            "failure_daily",
            "inbound_daily",
            "inbound_message",
            "message_latest_status",
            "message_status",
            "opt_out",
            "opt_out_daily",
            "rate_card",
            "rate_card_daily",
            "schema_migrations",
            "security_event",
            "spend_daily",
            "status_daily"
        ]
    );
    let mut again = Vec::new();
    assert_eq!(migrate::run(&cfg, &mut again).await.expect("second run"), 0);
    let again = String::from_utf8_lossy(&again);
    assert!(
        again.contains("= 001_tables.sql already applied"),
        "{again}"
    );

    // The views answer over the tables: a late `sent` does not downgrade `read`, and a
    // duplicated row does not change the funnel.
    let ch = bluetick::clickhouse::client(&cfg.clickhouse)
        .expect("clickhouse client")
        .with_database(&cfg.clickhouse.database);
    ch.query(
        "INSERT INTO message_status (event_id, ts, message_id, status, phone_number_id, pricing_category, billable) VALUES \
         ('r', 1750000300, 'm1', 'read', 'p', 'utility', 1), ('d', 1750000200, 'm1', 'delivered', 'p', 'utility', 1), \
         ('d', 1750000200, 'm1', 'delivered', 'p', 'utility', 1), ('s', 1750000400, 'm1', 'sent', 'p', 'utility', 1), \
         ('f', 1750000100, 'm2', 'failed', 'p', 'utility', 0)",
    )
    .execute()
    .await
    .expect("insert");
    let latest = ch
        .query("SELECT status FROM message_latest_status ORDER BY message_id")
        .fetch_all::<String>()
        .await
        .expect("latest");
    assert_eq!(latest, ["read", "failed"]);
    let funnel = ch
        .query("SELECT messages, sent, delivered, read, failed, billable FROM daily_funnel")
        .fetch_all::<(u64, u64, u64, u64, u64, u64)>()
        .await
        .expect("funnel");
    assert_eq!(funnel, [(2, 1, 1, 1, 1, 1)]);
    drop_database(&cfg).await;
}

#[tokio::test]
async fn a_changed_applied_file_is_refused() {
    let mut cfg = config();
    cfg.clickhouse.url = clickhouse_url();
    migrate::run(&cfg, &mut Vec::new())
        .await
        .expect("first run");
    let ch = bluetick::clickhouse::client(&cfg.clickhouse)
        .expect("clickhouse client")
        .with_database(&cfg.clickhouse.database);
    // Pretend 002 was applied with other contents: swap its record (18.16 has mutations but
    // no lightweight UPDATE, so insert the new record and delete the old one).
    ch.query("INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (2, '002_views.sql', 'edited', now())")
        .execute()
        .await
        .expect("record an edited file");
    ch.query("ALTER TABLE schema_migrations DELETE WHERE version = 2 AND checksum != 'edited'")
        .execute()
        .await
        .expect("delete the original record");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let n = ch
            .query(
                "SELECT count() FROM schema_migrations WHERE version = 2 AND checksum != 'edited'",
            )
            .fetch_one::<u64>()
            .await
            .expect("count");
        if n == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "mutation did not finish"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let err = migrate::run(&cfg, &mut Vec::new())
        .await
        .expect_err("changed file refused");
    let msg = err.to_string();
    assert!(
        msg.contains("002_views.sql") && msg.contains("add a new file"),
        "{msg}"
    );
    drop_database(&cfg).await;
}

#[test]
fn the_binary_migrates_with_only_environment_variables() {
    let cfg = config();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bluetick"))
        .arg("migrate")
        .env_clear()
        .env("BLUETICK_CLICKHOUSE_URL", clickhouse_url())
        .env("BLUETICK_CLICKHOUSE_DATABASE", &cfg.clickhouse.database)
        .env("BLUETICK_KAFKA_BROKERS", &cfg.kafka.brokers)
        .env("BLUETICK_KAFKA_EVENTS_TOPIC", &cfg.kafka.events_topic)
        .env("BLUETICK_KAFKA_SECURITY_TOPIC", &cfg.kafka.security_topic)
        .env(
            "BLUETICK_KAFKA_DEAD_LETTER_TOPIC",
            &cfg.kafka.dead_letter_topic,
        )
        .output()
        .expect("run bluetick migrate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("{} applied", MIGRATIONS.len())) && stdout.contains("topics"),
        "{stdout}"
    );

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_bluetick"))
        .arg("migrate")
        .env_clear()
        .env("BLUETICK_CLICKHOUSE_URL", "http://127.0.0.1:1")
        .output()
        .expect("run bluetick migrate");
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.starts_with("bluetick: clickhouse at http://127.0.0.1:1"),
        "{stderr}"
    );

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut cfg = cfg;
    cfg.clickhouse.url = clickhouse_url();
    rt.block_on(drop_database(&cfg));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_runs_started_together_all_succeed_and_apply_each_file_once() {
    let mut cfg = config();
    cfg.clickhouse.url = clickhouse_url();
    // The sink's init container waits, reading only, while the runs race.
    let waiter = {
        let cfg = cfg.clone();
        tokio::spawn(async move {
            let mut out = Vec::new();
            let r = migrate::wait_applied(&cfg, std::time::Duration::from_secs(60), &mut out).await;
            (r.is_ok(), String::from_utf8_lossy(&out).into_owned())
        })
    };
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let cfg = cfg.clone();
            tokio::spawn(async move {
                migrate::run(&cfg, &mut Vec::new())
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    for r in runs {
        r.await
            .expect("task")
            .expect("every concurrent run succeeds");
    }
    let versions = ch_text(
        &cfg,
        "SELECT version, count() > 0 FROM schema_migrations GROUP BY version ORDER BY version",
    )
    .await;
    assert_eq!(versions.lines().count(), MIGRATIONS.len(), "{versions}");
    let columns = scalar(
        &cfg,
        &format!(
            "SELECT count() FROM system.columns WHERE database = '{}' AND table = 'message_status' \
             AND name IN ('recipient_type', 'user_hash', 'parent_user_hash')",
            cfg.clickhouse.database
        ),
    )
    .await;
    assert_eq!(columns, 3);
    // And a run after them changes nothing.
    assert_eq!(migrate::run(&cfg, &mut Vec::new()).await.expect("again"), 0);
    let (ok, said) = waiter.await.expect("waiter");
    assert!(ok && said.contains("every migration applied"), "{said}");
    drop_database(&cfg).await;
}

#[tokio::test]
async fn waiting_for_the_schema_times_out_naming_what_is_missing() {
    let mut cfg = config();
    cfg.clickhouse.url = clickhouse_url();
    let e = migrate::wait_applied(&cfg, std::time::Duration::from_secs(3), &mut Vec::new())
        .await
        .expect_err("nothing was migrated");
    let text = e.to_string();
    assert!(
        text.contains("001_tables.sql") && text.contains("bluetick migrate"),
        "{text}"
    );
}
