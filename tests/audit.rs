//! `bluetick audit` against the real broker and ClickHouse: on a pipeline that took mixed
//! traffic (every shape the load generator makes, content and numbers in it) it finds nothing
//! and exits 0; with one of each finding planted, it reports each, where it is, and exits
//! non-zero.

mod common;

use bluetick::audit::{Limits, Report};
use bluetick_loadtest::traffic::{Shape, Traffic};
use common::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

async fn audit(cfg: &bluetick::config::Config) -> Report {
    let mut progress = Vec::new();
    bluetick::audit::run(cfg, Limits::default(), &mut progress)
        .await
        .expect("audit runs")
}

#[tokio::test]
async fn a_pipeline_that_took_mixed_traffic_has_nothing_to_report() {
    let (cfg, ingest, sink) = pipeline().await;
    let mut traffic = Traffic::new(SECRET.as_bytes(), Shape::Mixed, "AUD", 7);
    let mut events = 0;
    for _ in 0..300 {
        let r = traffic.next_request();
        let reply = post(
            ingest.addr,
            &r.body,
            &[
                ("content-type", "application/json"),
                ("x-hub-signature-256", &r.signature),
            ],
        )
        .await;
        assert_eq!(reply.status, 200);
        events += r.events;
    }
    // A forged request and a body that is not a webhook: a security event and a dead letter.
    let forged = post(
        ingest.addr,
        b"{}",
        &[
            ("content-type", "application/json"),
            ("x-hub-signature-256", "sha256=00"),
        ],
    )
    .await;
    assert_eq!(forged.status, 401);
    assert_eq!(
        post_signed(ingest.addr, b"{\"SECRET\": 919876543210}")
            .await
            .status,
        200
    );
    let stored =
        "SELECT (SELECT count() FROM message_status) + (SELECT count() FROM inbound_message) \
                  + (SELECT count() FROM account_event)";
    let deadline = std::time::Instant::now() + WAIT;
    while scalar(&cfg, stored).await < events as u64 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sink.stop().await;
    ingest.stop().await;

    let report = audit(&cfg).await;
    assert!(report.is_clean(), "{:#?}", report.findings);
    let scanned: u64 = report.coverage.iter().map(|c| c.scanned).sum();
    assert!(scanned > 300, "{:#?}", report.coverage);
    assert!(
        report
            .coverage
            .iter()
            .any(|c| c.what.contains(&cfg.kafka.dead_letter_topic) && c.scanned == 1),
        "{:#?}",
        report.coverage
    );
    drop_database(&cfg).await;
}

#[tokio::test]
async fn every_kind_of_finding_is_reported_where_it_is() {
    let mut cfg = config();
    sink_config(&mut cfg);
    migrate(&cfg).await;
    // Topics as the policy wants them, but the security topic kept 30 days.
    bluetick::kafka::topics::ensure(&cfg.kafka, Duration::from_secs(10))
        .await
        .expect("topics");
    let mut long = cfg.clone();
    long.kafka.security_topic = unique("long-security");
    long.kafka.retention_ms = 30 * 86_400_000;
    long.kafka.dead_letter_retention_ms = long.kafka.retention_ms;
    bluetick::kafka::topics::ensure(&long.kafka, Duration::from_secs(10))
        .await
        .expect("topic");
    cfg.kafka.security_topic = long.kafka.security_topic.clone();

    let now = now_secs();
    let erased = bluetick::privacy::Pepper::new(PEPPER.as_bytes()).hash_phone("919812300000");
    let raw = wamid("919812345678", "RAW");
    for sql in [
        // A raw number where a reason belongs, and content where a status belongs.
        format!("INSERT INTO account_event (event_id, ts, kind, reason) VALUES ('a1', {now}, 'other', 'call 919876543210')"),
        format!("INSERT INTO message_status (event_id, ts, message_id, status) VALUES ('s1', {now}, '{raw}', 'sent')"),
        format!("INSERT INTO message_status (event_id, ts, message_id, status) VALUES ('s2', {now}, '', '{}')", "hello, this is what the customer wrote to us ".repeat(3)),
        // A partition past retention.
        format!("INSERT INTO inbound_message (event_id, ts) VALUES ('i1', {})", now - 120 * 86_400),
        // An erased person's row, written again for an event before their erasure.
        format!("INSERT INTO erasure_audit (request_id, person_hash, requested_at, finished_at, outcome) VALUES ('er', '{erased}', {now}, {now}, 'erased')"),
        format!("INSERT INTO message_status (event_id, ts, person_hash, person_masked) VALUES ('s3', {}, '{erased}', '91XXXXXX0000')", now - 60),
    ] {
        ch_text(&cfg, &sql).await;
    }

    let report = audit(&cfg).await;
    let got: Vec<(&str, String)> = report
        .findings
        .iter()
        .map(|f| (f.check, f.place.clone()))
        .collect();
    let db = &cfg.clickhouse.database;
    for want in [
        ("phone_number", "account_event.reason".to_string()),
        (
            "id_decodes_to_number",
            "message_status.message_id".to_string(),
        ),
        ("content_length", "message_status.status".to_string()),
        (
            "past_retention",
            format!(
                "{db}.inbound_message partition {}",
                bluetick::model::tables::yyyymmdd((now - 120 * 86_400) / 86_400)
            ),
        ),
        ("erased_person", "message_status.person_hash".to_string()),
        ("topic_retention", cfg.kafka.security_topic.clone()),
    ] {
        assert!(
            got.contains(&(want.0, want.1.clone())),
            "{want:?} not in {got:#?}"
        );
    }
    let text = serde_json::to_string(&report).expect("json");
    for clear in ["919876543210", "919812345678", "what the customer wrote"] {
        assert!(
            !text.contains(clear),
            "a finding shows {clear} in clear: {text}"
        );
    }

    // The binary: exits non-zero, one line per finding, JSON on request.
    let run = |format: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_bluetick"))
            .args(["audit", "--format", format])
            .env("BLUETICK_KAFKA_BROKERS", &cfg.kafka.brokers)
            .env("BLUETICK_KAFKA_EVENTS_TOPIC", &cfg.kafka.events_topic)
            .env("BLUETICK_KAFKA_SECURITY_TOPIC", &cfg.kafka.security_topic)
            .env(
                "BLUETICK_KAFKA_DEAD_LETTER_TOPIC",
                &cfg.kafka.dead_letter_topic,
            )
            .env("BLUETICK_CLICKHOUSE_URL", &cfg.clickhouse.url)
            .env("BLUETICK_CLICKHOUSE_DATABASE", db)
            .env("BLUETICK_PEPPER", "change-me-please-0000")
            .output()
            .expect("audit")
    };
    let out = run("text");
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FINDING weak_secret at privacy.pepper"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FINDING phone_number at account_event.reason: 1"),
        "{stdout}"
    );
    let out = run("json");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert!(
        json["findings"].as_array().is_some_and(|f| f.len() >= 7),
        "{json}"
    );
    drop_database(&cfg).await;
}
