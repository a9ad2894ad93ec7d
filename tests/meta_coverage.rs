//! Everything Meta sends that a BSP charts, through the real pipeline (ingest → Kafka → sink →
//! ClickHouse): calls, opt-outs, template lifecycle, account health, inbound detail and
//! coexistence traffic, from fixtures of Meta's documented shapes with content markers and
//! numbers in every content and person field. Typed columns hold what they should; no table
//! and no topic holds a marker, a number or an id that decodes to one. Two Meta apps with their
//! own secrets, a tenant map reloaded mid-run, and `export --tenant`.

mod common;

use bluetick::config::{AppConfig, Config, Secret};
use common::*;
use std::net::SocketAddr;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const RETAIL_SECRET: &str = "Zr6yN1cV8bQ3xK5mT2pW";
const RETAIL_TOKEN: &str = "retail-verify-9931";
const ACME_WABA: &str = "102290129340398";
const GLOBEX_WABA: &str = "202290129340399";

const FIXTURES: [&str; 5] = [
    include_str!("fixtures/calls.json"),
    include_str!("fixtures/user_preferences.json"),
    include_str!("fixtures/template_lifecycle.json"),
    include_str!("fixtures/account_health.json"),
    include_str!("fixtures/inbound_detail.json"),
];

/// Numbers and places in the fixtures that must never be stored, and the content markers.
const NEVER: &[&str] = &[
    "SECRET",
    "919812345670",
    "447700900456",
    "5511987650001",
    "192.0.2.44",
    "12.9715987",
    "120363040000000001",
];

async fn post_to(addr: SocketAddr, path: &str, body: &[u8], secret: &str) -> Reply {
    let sig = bluetick::ingest::verify::sign(secret.as_bytes(), body);
    let req = ::http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sig)
        .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(
            body,
        )))
        .expect("request");
    send(req).await
}

fn setup(dir: &std::path::Path) -> (Config, std::path::PathBuf) {
    let mut cfg = config();
    sink_config(&mut cfg);
    cfg.ingest.apps = vec![AppConfig {
        name: "retail".into(),
        app_secret: Secret(RETAIL_SECRET.into()),
        verify_token: Secret(RETAIL_TOKEN.into()),
        ..AppConfig::default()
    }];
    let map = dir.join("tenants.toml");
    std::fs::write(
        &map,
        format!("[waba]\n\"{ACME_WABA}\" = \"acme\"\n\"{GLOBEX_WABA}\" = \"globex\"\n"),
    )
    .expect("tenant map");
    cfg.ingest.tenant_map = map.to_string_lossy().into_owned();
    cfg.ingest.tenant_map_reload_ms = 200;
    // The fixtures' times are Meta's documented examples of 2025: keep them.
    let r = &mut cfg.retention;
    for days in [
        &mut r.message_status_days,
        &mut r.inbound_message_days,
        &mut r.account_event_days,
        &mut r.call_event_days,
        &mut r.opt_out_days,
    ] {
        *days = 3650;
    }
    (cfg, map)
}

#[tokio::test]
async fn every_field_lands_typed_and_nothing_personal_is_stored() {
    let dir = common::procs::scratch_dir("meta");
    let (cfg, map) = setup(&dir);
    migrate(&cfg).await;
    let ingest = Server::start(&cfg).await;
    let sink = Sink::start(&cfg).await;

    for body in FIXTURES {
        let reply = post_signed(ingest.addr, body.as_bytes()).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    // The other app's client business, signed with its own secret, at its own path.
    // Other calls (ids differ) of another WABA.
    let globex = FIXTURES[0]
        .replace(ACME_WABA, GLOBEX_WABA)
        .replace("wacid.HBgM", "wacid.HBgN");
    assert_eq!(
        post_to(
            ingest.addr,
            "/webhook/retail",
            globex.as_bytes(),
            RETAIL_SECRET
        )
        .await
        .status,
        200
    );
    // Each app's secret is good for its own path only; a name no app has is not found.
    let refused = [
        ("/webhook/retail", SECRET, 401),
        ("/webhook", RETAIL_SECRET, 401),
        ("/webhook/wholesale", SECRET, 404),
    ];
    for (path, secret, status) in refused {
        let reply = post_to(ingest.addr, path, globex.as_bytes(), secret).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.body);
    }
    let handshake = |token: &str| {
        format!("/webhook/retail?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=c42")
    };
    let ok = get(ingest.addr, &handshake(RETAIL_TOKEN)).await;
    assert_eq!((ok.status, ok.body.as_str()), (200, "c42"));
    assert_eq!(get(ingest.addr, &handshake(TOKEN)).await.status, 403);

    let calls = "SELECT count() FROM call_event FINAL";
    assert_eq!(wait_for_scalar(&cfg, calls, 10, WAIT).await, 10);
    let account = "SELECT count() FROM account_event FINAL";
    // 5 template + 6 account health + 3 coexistence changes.
    assert_eq!(wait_for_scalar(&cfg, account, 14, WAIT).await, 14);
    let inbound = "SELECT count() FROM inbound_message FINAL";
    assert_eq!(wait_for_scalar(&cfg, inbound, 7, WAIT).await, 7);
    let opt_outs = "SELECT count() FROM opt_out FINAL";
    assert_eq!(wait_for_scalar(&cfg, opt_outs, 2, WAIT).await, 2);

    // Calls: outcome, direction, duration, market, tenant; the customer as a hash.
    let text = ch_text(
        &cfg,
        "SELECT tenant, kind, update_event, status, direction, duration_s, country_code, \
         person_masked, length(person_hash), length(call_id) FROM call_event FINAL \
         ORDER BY tenant, ts, kind FORMAT TSV",
    )
    .await;
    let acme: Vec<&str> = text.lines().filter(|l| l.starts_with("acme\t")).collect();
    assert_eq!(
        acme,
        [
            "acme\tcall\tconnect\t\tUSER_INITIATED\t0\t91\t91XXXXXX5670\t64\t32",
            "acme\tcall\tterminate\tCOMPLETED\tUSER_INITIATED\t118\t91\t91XXXXXX5670\t64\t32",
            "acme\tcall_status\t\tRINGING\t\t0\t44\t44XXXXXX0456\t64\t32",
            "acme\tcall_status\t\tREJECTED\t\t0\t44\t44XXXXXX0456\t64\t32",
            "acme\tcall\tterminate\tFAILED\tBUSINESS_INITIATED\t0\t44\t44XXXXXX0456\t64\t32",
        ],
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("globex\t")).count(),
        5
    );

    let text = ch_text(
        &cfg,
        "SELECT category, preference, country_code, tenant FROM opt_out FINAL ORDER BY ts FORMAT TSV",
    )
    .await;
    assert_eq!(
        text,
        "marketing_messages\tstop\t91\tacme\nmarketing_messages\tresume\t55\tacme\n"
    );

    let text = ch_text(
        &cfg,
        "SELECT kind, update_event, template_category, pause_title, reason, previous_category, \
         new_category, correct_category FROM account_event FINAL \
         WHERE kind LIKE 'template%' ORDER BY kind, update_event FORMAT TSV",
    )
    .await;
    for row in [
        "template_category\t\t\t\t\tUTILITY\tMARKETING\tMARKETING",
        "template_status\tPAUSED\tMARKETING\tFIRST_PAUSE\t\t\t\t",
        "template_status\tREJECTED\t\t\tINVALID_FORMAT\t\t\t",
    ] {
        assert!(text.lines().any(|l| l == row), "{row} not in\n{text}");
    }
    let text = ch_text(
        &cfg,
        "SELECT kind, alert_type, alert_severity, decision, violation_type, ban_state, \
         max_daily_conversations, item_count FROM account_event FINAL \
         WHERE kind NOT LIKE 'template%' ORDER BY kind, field FORMAT TSV",
    )
    .await;
    for row in [
        "account_alert\tOBA_APPROVED\tCRITICAL\t\t\t\t\t0",
        "account_review\t\t\tAPPROVED\t\t\t\t0",
        "account_update\t\t\t\tSCAM\tSCHEDULE_FOR_DISABLE\t\t0",
        "business_capability\t\t\t\t\t\t100000\t0",
        "phone_name\t\t\tREJECTED\t\t\t\t0",
        "phone_quality\t\t\t\t\t\t100K\t0",
        "other\t\t\t\t\t\t\t1",
        "other\t\t\t\t\t\t\t2",
    ] {
        assert!(text.lines().any(|l| l == row), "{row} not in\n{text}");
    }
    let text = ch_text(
        &cfg,
        "SELECT message_type, message_subtype, ad_source_type, ad_source_id, \
         length(target_message_id), length(group_id), length(ad_click_id), from_ad \
         FROM inbound_message FINAL ORDER BY ts FORMAT TSV",
    )
    .await;
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "system\tuser_preference_changed\t\t\t0\t0\t0\t0",
            "interactive\tnfm_reply\t\t\t0\t0\t0\t0",
            "interactive\tbutton_reply\t\t\t0\t0\t0\t0",
            "reaction\t\t\t\t32\t0\t0\t0",
            "text\t\tad\t120208771234567890\t0\t0\t32\t1",
            "location\t\t\t\t0\t0\t0\t0",
            "text\t\t\t\t0\t32\t0\t0",
        ],
        "{text}"
    );

    // As an auditor would: every string cell and every topic record, decoded.
    let (findings, cells) = scan_tables(&cfg, NEVER).await;
    assert!(cells > 100, "scanned {cells} cells");
    assert!(findings.is_empty(), "{findings:#?}");
    let (findings, records) = scan_topics(&cfg, NEVER);
    assert!(records > 5, "scanned {records} records");
    assert!(findings.is_empty(), "{findings:#?}");

    // The probe of an unknown app is a security event like a bad signature.
    let security = consume_security(&cfg.kafka.brokers, &cfg.kafka.security_topic, 3, WAIT).await;
    let reasons: Vec<String> = security
        .iter()
        .map(|r| r.json()["reason"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(reasons.iter().any(|r| r == "unknown_app"), "{reasons:?}");

    // export --tenant: exactly one client's rows, every table.
    let mut out = Vec::new();
    let summary = bluetick::export::run_tenant(&cfg, "globex", &mut out, &mut Vec::new())
        .await
        .expect("tenant export");
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .expect("UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(summary.values().sum::<u64>(), lines.len() as u64);
    assert_eq!(lines.len(), 5);
    assert!(lines
        .iter()
        .all(|l| l["tenant"] == "globex" && l["table"] == "call_event"));
    assert!(
        bluetick::export::run_tenant(&cfg, "acme'; DROP", &mut Vec::new(), &mut Vec::new())
            .await
            .is_err(),
        "labels are checked, never spliced"
    );

    // A person's rights cover the new tables: export finds their call and opt-out rows,
    // erasure removes them.
    let person = bluetick::privacy::Pepper::new(PEPPER.as_bytes()).hash_phone("919812345670");
    let mut out = Vec::new();
    let held = bluetick::export::run(
        &cfg,
        &[person],
        bluetick::export::Format::Jsonl,
        &mut out,
        &mut Vec::new(),
    )
    .await
    .expect("person export");
    // Two calls of theirs under each WABA (the globex copy calls them too).
    assert_eq!(held.get("call_event"), Some(&4), "{held:?}");
    assert_eq!(held.get("opt_out"), Some(&1), "{held:?}");
    let waits = bluetick::erase::Waits {
        mutation: Duration::from_secs(60),
        settle: Duration::from_millis(500),
    };
    bluetick::erase::run(&cfg, &[person], waits, &mut Vec::new())
        .await
        .expect("erase");
    let left = format!(
        "SELECT (SELECT count() FROM call_event WHERE person_hash = '{p}') + \
         (SELECT count() FROM opt_out WHERE person_hash = '{p}')",
        p = person.to_hex().as_str()
    );
    assert_eq!(scalar(&cfg, &left).await, 0);

    // The map changes while ingest runs: later events carry the new label.
    std::fs::write(
        &map,
        format!("[waba]\n\"{ACME_WABA}\" = \"acme-renamed\"\n"),
    )
    .expect("rewrite");
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&map)
        .and_then(|f| f.set_modified(later))
        .expect("mtime");
    tokio::time::sleep(Duration::from_millis(800)).await;
    // (Account health: the person erased above would be dropped as erased.)
    assert_eq!(
        post_signed(ingest.addr, FIXTURES[3].as_bytes())
            .await
            .status,
        200
    );
    let renamed = "SELECT count() FROM account_event WHERE tenant = 'acme-renamed'";
    assert_eq!(wait_for_scalar(&cfg, renamed, 6, WAIT).await, 6);

    sink.stop().await;
    ingest.stop().await;
    drop_database(&cfg).await;
}
