//! Privacy operations against the real broker and ClickHouse: a person's traffic among
//! others' goes through the pipeline; export returns exactly their rows, erase removes exactly
//! them and audits it; the retention report flags data past the policy; and no column of the
//! live schema can hold message content.

mod common;

use bluetick::export::Format;
use bluetick::privacy::{Pepper, PersonHash};
use common::*;
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const PERSON: &str = "+91 98123 45678";
const PERSON_DIGITS: &str = "919812345678";

fn other(i: usize) -> String {
    format!("9197{:08}", 30_000_000 + i)
}

fn hash(number: &str) -> PersonHash {
    Pepper::new(PEPPER.as_bytes()).hash_phone(number)
}

fn schema_fields() -> BTreeSet<String> {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../schemas/export.v1.schema.json")).expect("schema");
    schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .cloned()
        .collect()
}

/// Erase's waits in tests: the sinks are stopped before erasing, so nothing is in flight.
fn waits() -> bluetick::erase::Waits {
    bluetick::erase::Waits {
        mutation: WAIT,
        settle: Duration::from_millis(100),
    }
}

async fn export(cfg: &bluetick::config::Config, format: Format) -> String {
    let mut data = Vec::new();
    bluetick::export::run(cfg, &[hash(PERSON)], format, &mut data, &mut Vec::new())
        .await
        .expect("export");
    String::from_utf8(data).expect("utf-8")
}

#[tokio::test]
async fn export_and_erase_cover_exactly_one_person() {
    let (cfg, ingest, sink) = pipeline().await;
    let now = now_secs() - 300;
    let mut statuses = Vec::new();
    for m in 0..3 {
        for (status, dt) in [("sent", 0), ("delivered", 5)] {
            statuses.push(Status {
                message_id: wamid(PERSON, &format!("P{m}")),
                status,
                ts: now + m + dt,
                number: PERSON.into(),
            });
        }
    }
    for i in 0..40 {
        statuses.push(Status {
            message_id: wamid(&other(i), &format!("O{i}")),
            status: "sent",
            ts: now + i as u64,
            number: other(i),
        });
    }
    let mut senders: Vec<(String, String)> = (0..3)
        .map(|i| (other(i), wamid(&other(i), &format!("IN{i}"))))
        .collect();
    senders.push((PERSON_DIGITS.into(), wamid(PERSON_DIGITS, "INP0")));
    senders.push((PERSON_DIGITS.into(), wamid(PERSON_DIGITS, "INP1")));
    for body in [status_body(&statuses), inbound_body(&senders, now)] {
        for _ in 0..2 {
            assert_eq!(post_signed(ingest.addr, &body).await.status, 200);
        }
    }
    let events = "SELECT uniqExact(event_id) FROM message_status";
    assert_eq!(wait_for_scalar(&cfg, events, 46, WAIT).await, 46);
    let inbound_events = "SELECT uniqExact(event_id) FROM inbound_message";
    assert_eq!(wait_for_scalar(&cfg, inbound_events, 5, WAIT).await, 5);
    sink.stop().await;
    ingest.stop().await;

    // Export: exactly the person's rows, each once, in the documented shape.
    let person_hash = hash(PERSON).to_string();
    let jsonl = export(&cfg, Format::Jsonl).await;
    let rows: Vec<serde_json::Map<String, serde_json::Value>> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    assert_eq!(rows.len(), 8, "{jsonl}");
    let fields = schema_fields();
    let mut ids = BTreeSet::new();
    for row in &rows {
        assert_eq!(row["person_hash"], person_hash.as_str());
        assert_eq!(row["person_masked"], "91XXXXXX5678");
        assert!(row.keys().all(|k| fields.contains(k)), "{row:?}");
        ids.insert(format!("{}:{}", row["table"], row["message_id"]));
    }
    assert_eq!(
        ids.len(),
        5,
        "3 messages sent to them + 2 they sent: {ids:?}"
    );
    assert!(!jsonl.contains("SECRET") && !jsonl.contains(PERSON_DIGITS));
    let csv = export(&cfg, Format::Csv).await;
    assert_eq!(csv.lines().count(), 9, "{csv}");
    assert!(csv.starts_with("table,event_id,ts,"), "{csv}");

    // Erase: exactly the person, proved and audited; the others untouched.
    let mut progress = Vec::new();
    let report = bluetick::erase::run(&cfg, &[hash(PERSON)], waits(), &mut progress)
        .await
        .expect("erase");
    let progress = String::from_utf8(progress).expect("utf-8");
    assert!(
        progress.contains("message_status:") && progress.contains("inbound_message:"),
        "{progress}"
    );
    assert!(report.removed["message_status"] >= 6 && report.removed["inbound_message"] >= 2);
    let theirs = format!(
        "SELECT (SELECT count() FROM message_status WHERE person_hash = '{person_hash}') + \
         (SELECT count() FROM inbound_message WHERE person_hash = '{person_hash}')"
    );
    assert_eq!(scalar(&cfg, &theirs).await, 0);
    assert_eq!(scalar(&cfg, events).await, 40);
    assert_eq!(scalar(&cfg, inbound_events).await, 3);
    let audit = ch_text(
        &cfg,
        &format!("SELECT request_id, rows_removed, outcome, tables FROM erasure_audit WHERE person_hash = '{person_hash}' AND outcome = 'erased' FORMAT TSV"),
    )
    .await;
    let total: u64 = report.removed.values().sum();
    assert_eq!(
        audit,
        format!(
            "{}\t{total}\terased\tcall_event,inbound_message,message_status,opt_out\n",
            report.request_id
        )
    );
    let all_audit = ch_text(&cfg, "SELECT * FROM erasure_audit FORMAT TSV").await;
    assert!(!all_audit.contains(PERSON_DIGITS) && !all_audit.contains("5678\t"));
    assert_eq!(export(&cfg, Format::Jsonl).await, "");

    // Again: nothing left, and the audit says so.
    let again = bluetick::erase::run(&cfg, &[hash(PERSON)], waits(), &mut Vec::new())
        .await
        .expect("erase again");
    assert_eq!(again.removed.values().sum::<u64>(), 0);
    let n = format!(
        "SELECT count() FROM erasure_audit WHERE person_hash = '{person_hash}' AND outcome = 'erased'"
    );
    assert_eq!(scalar(&cfg, &n).await, 2);
    drop_database(&cfg).await;
}

/// The pepper after a rotation, in the rotation test.
const NEW_PEPPER: &str = "R8w3Nc6Tz1Gh5Jd9Kp2X";

fn bluetick(cfg: &bluetick::config::Config, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_bluetick"))
        .args(args)
        .env("BLUETICK_CLICKHOUSE_URL", &cfg.clickhouse.url)
        .env("BLUETICK_CLICKHOUSE_DATABASE", &cfg.clickhouse.database)
        .env("BLUETICK_PEPPER", NEW_PEPPER)
        .env("BLUETICK_PEPPER_PREVIOUS", PEPPER)
        .env("BLUETICK_ID_KEY", ID_KEY)
        .output()
        .expect("run bluetick")
}

#[test]
fn the_binary_erases_and_exports_across_a_pepper_rotation() {
    let mut cfg = config();
    cfg.clickhouse.url = clickhouse_url();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let ts = now_secs();
    let old = hash(PERSON).to_string();
    let new = Pepper::new(NEW_PEPPER.as_bytes())
        .hash_phone(PERSON)
        .to_string();
    rt.block_on(async {
        migrate(&cfg).await;
        ch_text(
            &cfg,
            &format!(
                "INSERT INTO message_status (event_id, ts, message_id, status, person_masked, person_hash) VALUES \
                 ('a', {ts}, 'm1', 'sent', '91XXXXXX5678', '{old}'), ('b', {ts}, 'm2', 'sent', '91XXXXXX5678', '{new}'), \
                 ('c', {ts}, 'm3', 'sent', '91XXXXXX0000', 'someone-else')"
            ),
        )
        .await;
    });
    let dir = std::env::temp_dir().join(unique("export"));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let file = dir.join("person.csv");
    let file_arg = file.to_string_lossy().to_string();

    // Without --previous-pepper only rows hashed after the rotation are found.
    let out = bluetick(
        &cfg,
        &[
            "export", "--phone", PERSON, "--format", "csv", "--out", &file_arg,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&file).expect("csv").lines().count(),
        2
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("file").permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the export is readable by its owner only"
        );
    }
    let out = bluetick(&cfg, &["export", "--phone", PERSON, "--out", &file_arg]);
    assert!(
        !out.status.success(),
        "an existing export is not overwritten"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    let out = bluetick(
        &cfg,
        &["export", "--phone", PERSON, "--out", &file_arg, "--force"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = bluetick(&cfg, &["export", "--phone", PERSON, "--previous-pepper"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("export: 2 rows"));

    let list = dir.join("people.txt");
    std::fs::write(&list, format!("# erasure requests\n{PERSON}\n")).expect("list");
    let out = bluetick(
        &cfg,
        &[
            "erase",
            "--from-file",
            &list.to_string_lossy(),
            "--previous-pepper",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("message_status: 2 rows erased, 0 remain"),
        "{stdout}"
    );
    assert!(stdout.contains("2 rows removed, 0 remain"), "{stdout}");
    let left = rt.block_on(ch_text(
        &cfg,
        "SELECT person_hash FROM message_status FORMAT TSV",
    ));
    assert_eq!(left, "someone-else\n");

    let out = bluetick(&cfg, &["erase"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no person given"));
    let out = bluetick(
        &cfg,
        &["erase", "--phone", "x'); DROP TABLE message_status"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--phone") && stderr.contains("is not what the flag takes"),
        "{stderr}"
    );
    rt.block_on(drop_database(&cfg));
}

#[test]
fn the_retention_report_flags_data_past_the_policy_until_retention_runs() {
    let mut cfg = config();
    cfg.clickhouse.url = clickhouse_url();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let old = now_secs() - 120 * 86_400;
    rt.block_on(async {
        migrate(&cfg).await;
        ch_text(
            &cfg,
            &format!(
                "INSERT INTO inbound_message (event_id, ts) VALUES ('old', {old}), ('new', {})",
                now_secs()
            ),
        )
        .await;
        // An erasure four years ago: past the audit's three years.
        ch_text(
            &cfg,
            &format!(
                "INSERT INTO erasure_audit (request_id, person_hash, requested_at, finished_at, outcome) \
                 VALUES ('er-old', 'h', {0}, {0}, 'erased'), ('er-new', 'h', {1}, {1}, 'erased')",
                now_secs() - 4 * 365 * 86_400,
                now_secs()
            ),
        )
        .await;
    });
    let report = bluetick(&cfg, &["retention", "--report"]);
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(!report.status.success(), "{text}");
    assert!(text.contains("NO: run `bluetick retention`"), "{text}");
    assert!(String::from_utf8_lossy(&report.stderr)
        .contains("inbound_message, erasure_audit hold data past retention"));
    assert!(text.contains("security_event     180"), "{text}");
    assert!(text.contains("erasure_audit     1095"), "{text}");
    assert!(text.contains("basis:"), "{text}");
    let run = bluetick(&cfg, &["retention"]);
    assert!(run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stdout)
            .contains("deleted 1 erasure_audit rows older than 1095 days"),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
    let left = rt.block_on(ch_text(
        &cfg,
        "SELECT request_id FROM erasure_audit FORMAT TSV",
    ));
    assert_eq!(left, "er-new\n");
    let report = bluetick(&cfg, &["retention", "--report"]);
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(report.status.success(), "{text}");
    assert!(!text.contains("NO"), "{text}");
    rt.block_on(drop_database(&cfg));
}

/// Every column of every table, read from the live schema, is one of these reviewed metadata
/// columns. A new column fails this test until someone decides it cannot hold content.
const REVIEWED_COLUMNS: &[&str] = &[
    "event_id",
    "ts",
    "received_ms",
    "waba_id",
    "phone_number_id",
    "display_phone_number",
    "message_id",
    "status",
    "person_masked",
    "person_hash",
    "conversation_id",
    "conversation_origin",
    "conversation_expiration_ts",
    "pricing_model",
    "pricing_category",
    "pricing_type",
    "billable",
    "error_code",
    "error_title",
    "message_type",
    "context_message_id",
    "recipient_type",
    "user_hash",
    "parent_user_hash",
    "identifier",
    "count",
    "forwarded",
    "from_ad",
    "kind",
    "field",
    "template_id",
    "template_name",
    "template_language",
    "update_event",
    "reason",
    "previous_quality",
    "new_quality",
    "current_limit",
    "source_ip",
    "route",
    "version",
    "name",
    "checksum",
    "applied_at",
    "request_id",
    "tables",
    "rows_removed",
    "rows_remaining",
    "requested_at",
    "finished_at",
    "outcome",
    "messages",
    "sent",
    "delivered",
    "read",
    "failed",
    "day",
    "last_ts",
    // Schema 006: tenants, markets, calls, opt-outs, template lifecycle, account health,
    // inbound detail (subtypes and pseudonymised targets, groups and ad clicks).
    "tenant",
    "country_code",
    "message_subtype",
    "target_message_id",
    "group_id",
    "ad_source_type",
    "ad_source_id",
    "ad_click_id",
    "call_id",
    "direction",
    "start_ts",
    "end_ts",
    "duration_s",
    "category",
    "preference",
    "template_category",
    "pause_title",
    "previous_category",
    "new_category",
    "correct_category",
    "alert_type",
    "alert_severity",
    "alert_status",
    "decision",
    "violation_type",
    "ban_state",
    "max_daily_conversations",
    "item_count",
    // Schema 007: counts per day and group, and the rate card.
    "calls",
    "longest_s",
    "events",
    "currency",
    "price_micros",
    "loaded_at",
    "effective_from",
    "spend_micros",
];

/// Words that would mean a column carries what a person wrote or sent.
const CONTENT_WORDS: &[&str] = &[
    "body",
    "caption",
    "text",
    "media",
    "url",
    "link",
    "latitude",
    "longitude",
    "location",
    "address",
    "contact",
    "profile",
    "filename",
    "mime",
    "sha256",
    "voice",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "emoji",
    "payload",
    "button",
    "interactive",
    "vcard",
];

#[tokio::test]
async fn no_column_of_the_live_schema_can_hold_message_content() {
    let mut cfg = config();
    cfg.clickhouse.url = clickhouse_url();
    migrate(&cfg).await;
    let columns = ch_text(
        &cfg,
        &format!(
            "SELECT table, name, type FROM system.columns WHERE database = '{}' FORMAT TSV",
            cfg.clickhouse.database
        ),
    )
    .await;
    let mut seen = 0;
    for line in columns.lines() {
        let mut f = line.split('\t');
        let (table, name, ty) = (
            f.next().unwrap_or(""),
            f.next().unwrap_or(""),
            f.next().unwrap_or(""),
        );
        assert!(
            REVIEWED_COLUMNS.contains(&name),
            "{table}.{name} ({ty}) is not a reviewed metadata column"
        );
        // Whole words only: `context_message_id` is an id, not text.
        for word in name.split('_') {
            assert!(
                !CONTENT_WORDS.contains(&word),
                "{table}.{name} looks like content ({word})"
            );
        }
        assert!(
            !ty.contains("Array") && !ty.contains("Map") && !ty.contains("Tuple"),
            "{table}.{name}: {ty}"
        );
        seen += 1;
    }
    assert!(seen > 60, "read the whole schema ({seen} columns)");
    drop_database(&cfg).await;
}

/// Lists longer than one query holds (ClickHouse's `max_query_size` used to stop one `IN` list
/// near 3,800 hashes) are split; a person at the start, the middle and the end of a list of
/// 3,000 is found by export and erased, and a person not on the list is untouched.
#[tokio::test]
async fn lists_of_thousands_of_people_export_and_erase_each_listed_person() {
    let mut cfg = config();
    cfg.clickhouse.url = clickhouse_url();
    migrate(&cfg).await;
    let people: Vec<String> = (0..4).map(|i| other(90_000 + i)).collect();
    let ts = now_secs() - 600;
    let values: Vec<String> = people
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "('e{i}', toDateTime({ts}), 'm{i}', 'sent', '{}', '91XXXXXX{:04}')",
                hash(p),
                i
            )
        })
        .collect();
    ch_text(
        &cfg,
        &format!(
            "INSERT INTO message_status (event_id, ts, message_id, status, person_hash, \
             person_masked) VALUES {}",
            values.join(", ")
        ),
    )
    .await;
    let mut list: Vec<PersonHash> = (0..2_997).map(|i| hash(&other(200_000 + i))).collect();
    list.insert(0, hash(&people[0]));
    list.insert(1_500, hash(&people[1]));
    list.push(hash(&people[2]));
    assert_eq!(list.len(), 3_000);

    let mut data = Vec::new();
    bluetick::export::run(&cfg, &list, Format::Jsonl, &mut data, &mut Vec::new())
        .await
        .expect("export of 3,000 people");
    let exported: BTreeSet<String> = String::from_utf8(data)
        .expect("utf-8")
        .lines()
        .map(|l| {
            let row: serde_json::Value = serde_json::from_str(l).expect("JSON");
            row["message_id"].as_str().expect("message_id").to_string()
        })
        .collect();
    let expected: BTreeSet<String> = ["m0", "m1", "m2"].map(String::from).into();
    assert_eq!(exported, expected);

    bluetick::erase::run(&cfg, &list, waits(), &mut Vec::new())
        .await
        .expect("erase of 3,000 people");
    let left = ch_text(
        &cfg,
        "SELECT message_id FROM message_status ORDER BY message_id FORMAT TSV",
    )
    .await;
    assert_eq!(left, "m3\n", "only the person not on the list is left");
    let audited = "SELECT uniqExact(person_hash) FROM erasure_audit WHERE outcome = 'erased'";
    assert_eq!(scalar(&cfg, audited).await, 3_000);
    drop_database(&cfg).await;
}
