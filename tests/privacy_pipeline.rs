//! The privacy promise read back the way an auditor would, against the real broker and
//! ClickHouse: ids as Meta makes them (base64 with the number inside), people known only by
//! business-scoped user ids, bodies that cannot be parsed, erasure under a replay of the whole
//! topic, topics' retention, and the path of rows and events written before ids were keyed.
//! Every table and every topic is read end to end and every value decoded and scanned.

mod common;

use bluetick::config::Config;
use bluetick::export::Format;
use bluetick::privacy::{Pepper, PersonHash};
use common::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn customer(i: usize) -> String {
    format!("9196{:08}", 40_000_000 + i)
}

fn phone_hash(number: &str) -> PersonHash {
    Pepper::new(PEPPER.as_bytes()).hash_phone(number)
}

fn user_hash(id: &str) -> PersonHash {
    Pepper::new(PEPPER.as_bytes()).hash_user(id)
}

fn waits() -> bluetick::erase::Waits {
    bluetick::erase::Waits {
        mutation: WAIT,
        settle: Duration::from_millis(500),
    }
}

async fn export_rows(cfg: &Config, hashes: &[PersonHash]) -> Vec<serde_json::Value> {
    let mut data = Vec::new();
    bluetick::export::run(cfg, hashes, Format::Jsonl, &mut data, &mut Vec::new())
        .await
        .expect("export");
    String::from_utf8(data)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn markers(numbers: &[String]) -> Vec<&str> {
    let mut m = vec!["SECRET", "wamid.", "@secret"];
    m.extend(numbers.iter().map(String::as_str));
    m
}

/// Statuses and replies whose ids carry the customers' numbers: none reaches a table, a topic
/// or an export; the latest status and funnel are as exact as before; `message-key` gives the
/// stored key of a raw id.
#[tokio::test]
async fn ids_that_carry_numbers_never_reach_a_table_a_topic_or_an_export() {
    let (cfg, ingest, sink) = pipeline().await;
    let now = now_secs() - 600;
    let numbers: Vec<String> = (0..40).map(customer).collect();
    let ids: Vec<String> = numbers
        .iter()
        .enumerate()
        .map(|(i, n)| wamid(n, &format!("A{i:04}")))
        .collect();
    let mut statuses = Vec::new();
    for (i, (n, id)) in numbers.iter().zip(&ids).enumerate() {
        let reached: &[&'static str] = match i % 4 {
            0 => &["read", "delivered", "sent"],
            1 => &["delivered", "sent"],
            2 => &["sent"],
            _ => &["failed", "sent"],
        };
        for (k, status) in reached.iter().enumerate() {
            statuses.push(Status {
                message_id: id.clone(),
                status,
                ts: now + i as u64 + 10 * (reached.len() - k) as u64,
                number: n.clone(),
            });
        }
    }
    // Replies that quote the first messages (context ids are wamids too).
    let replies = serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
        "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "SECRET-NAME"}, "wa_id": numbers[0]}],
            "messages": [{"from": numbers[0], "id": wamid(&numbers[0], "REPLY0"), "timestamp": now.to_string(),
                "type": "text", "text": {"body": "SECRET-BODY"},
                "context": {"from": "15550783881", "id": ids[0]}}]}}]}]});
    for body in [
        status_body(&statuses),
        serde_json::to_vec(&replies).expect("json"),
    ] {
        for _ in 0..2 {
            assert_eq!(post_signed(ingest.addr, &body).await.status, 200);
        }
    }
    let sql = "SELECT uniqExact(event_id) FROM message_status";
    assert_eq!(
        wait_for_scalar(&cfg, sql, statuses.len() as u64, WAIT).await,
        statuses.len() as u64
    );
    let sql = "SELECT count() FROM inbound_message FINAL";
    assert_eq!(wait_for_scalar(&cfg, sql, 1, WAIT).await, 1);
    sink.stop().await;
    ingest.stop().await;

    // Exact as before: the views group by the key as they grouped by the id.
    let latest = ch_text(
        &cfg,
        "SELECT status, count() FROM message_latest_status GROUP BY status ORDER BY status FORMAT TSV",
    )
    .await;
    assert_eq!(latest, "delivered\t10\nfailed\t10\nread\t10\nsent\t10\n");
    let funnel = ch_text(
        &cfg,
        "SELECT sum(messages), sum(sent), sum(delivered), sum(read), sum(failed) FROM daily_funnel FORMAT TSV",
    )
    .await;
    assert_eq!(funnel, "40\t40\t20\t10\t10\n");
    let context = ch_text(
        &cfg,
        "SELECT DISTINCT context_message_id FROM inbound_message FORMAT TSV",
    )
    .await;
    assert_eq!(context.trim(), key(&ids[0]), "replies join on the key");

    // An auditor's read of everything bluetick keeps.
    let (findings, cells) = scan_tables(&cfg, &markers(&numbers)).await;
    assert!(findings.is_empty(), "{findings:#?}");
    assert!(cells > 100, "scanned {cells} distinct cells");
    let (findings, records) = scan_topics(&cfg, &markers(&numbers));
    assert!(findings.is_empty(), "{findings:#?}");
    assert!(records >= 4, "read {records} records");
    let export = export_rows(&cfg, &[phone_hash(&numbers[0])]).await;
    assert_eq!(export.len(), 4, "3 statuses and a reply: {export:?}");
    let text = serde_json::to_string(&export).expect("json");
    for m in markers(&numbers) {
        assert!(!text.contains(m), "{m} in the export");
    }
    for row in &export {
        for column in [
            "message_id",
            "context_message_id",
            "event_id",
            "person_hash",
        ] {
            let v = row[column].as_str().unwrap_or_default();
            assert_eq!(bluetick::privacy::detect::scan(v), None, "{column} {v}");
        }
    }

    // A BSP joins its send log: the raw id gives the stored key, on argv and on stdin.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bluetick"))
        .args(["message-key", "--with-id", &ids[5]])
        .env("BLUETICK_ID_KEY", ID_KEY)
        .output()
        .expect("message-key");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let stored = ch_text(
        &cfg,
        &format!(
            "SELECT DISTINCT message_id FROM message_status WHERE message_id = '{}' FORMAT TSV",
            key(&ids[5])
        ),
    )
    .await;
    assert_eq!(line, format!("{}\t{}", ids[5], stored));
    drop_database(&cfg).await;
}

/// Signed bodies that cannot be parsed, full of content and numbers, are answered 200 and
/// kept only as skeletons; one with `null` and changed types where nothing is needed parses.
#[tokio::test]
async fn bodies_that_cannot_be_parsed_leave_no_content_anywhere() {
    let (cfg, ingest, sink) = pipeline().await;
    let n = customer(900);
    let content = format!(
        r#""contacts":[{{"profile":{{"name":"SECRET-NAME"}},"wa_id":"{n}"}}],"messages":[{{"from":"{n}","id":"{}","type":"text","text":{{"body":"SECRET-BODY call {n}"}}}}]"#,
        wamid(&n, "BAD1")
    );
    let unparseable = [
        format!(r#"{{"object":"whatsapp_business_account","value":{{{content}}}}}"#),
        format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"changes":[{{"value":{{{content}"#
        ),
        format!(r#"{{"entry":"{n} SECRET-STRING"}}"#),
    ];
    for body in &unparseable {
        assert_eq!(post_signed(ingest.addr, body.as_bytes()).await.status, 200);
    }
    let lenient = format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{
        "metadata":{{"phone_number_id":"106540352242922"}},"contacts":null,
        "messages":[{{"from":"{n}","id":"{}","timestamp":"{}","type":"text","errors":null,"context":"SECRET-CONTEXT","text":{{"body":"SECRET"}}}}]}}}}]}}]}}"#,
        wamid(&n, "LENIENT"),
        now_secs()
    );
    assert_eq!(
        post_signed(ingest.addr, lenient.as_bytes()).await.status,
        200
    );
    let sql = "SELECT count() FROM inbound_message";
    assert_eq!(
        wait_for_scalar(&cfg, sql, 1, WAIT).await,
        1,
        "the lenient body is stored"
    );
    let dead = consume(&cfg.kafka.brokers, &cfg.kafka.dead_letter_topic, 3, WAIT).await;
    assert_eq!(dead.len(), 3, "one skeleton per unparseable body");
    for d in &dead {
        let skeleton = d.json();
        assert_eq!(skeleton["kind"], "unparsed_webhook");
        assert!(skeleton["sha256"].as_str().is_some_and(|h| h.len() == 64));
    }
    sink.stop().await;
    ingest.stop().await;
    let numbers = vec![n];
    let (findings, _) = scan_topics(&cfg, &markers(&numbers));
    assert!(findings.is_empty(), "{findings:#?}");
    let (findings, _) = scan_tables(&cfg, &markers(&numbers)).await;
    assert!(findings.is_empty(), "{findings:#?}");
    drop_database(&cfg).await;
}

/// A webhook from a user who adopted a username (no number, user ids only) and statuses to
/// them; another person known by number and user id in one row and by user id alone in others.
fn bsuid_body(now: u64) -> Vec<u8> {
    let body = serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
    "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "SECRET-NAME", "username": "@secret"},
                      "user_id": "US.13491208655302741918", "parent_user_id": "US.ENT.11815799212886844830"}],
        "messages": [{"id": wamid("13491208655302741918", "U1"), "timestamp": now.to_string(), "type": "text",
                      "text": {"body": "SECRET"}}],
        "statuses": [
            {"id": wamid("13491208655302741918", "U2"), "status": "read", "timestamp": now.to_string(),
             "recipient_id": "US.13491208655302741918", "recipient_user_id": "US.13491208655302741918"},
            {"id": wamid(&customer(1), "L1"), "status": "sent", "timestamp": now.to_string(),
             "recipient_id": customer(1), "recipient_user_id": "IN.1648738043044942"},
            {"id": wamid(&customer(1), "L2"), "status": "read", "timestamp": (now + 1).to_string(),
             "recipient_user_id": "IN.1648738043044942"},
            {"id": wamid(&customer(2), "G1"), "status": "sent", "timestamp": now.to_string(),
             "recipient_id": "120363040000000000@g.us", "recipient_type": "group"}
        ]}}]}]});
    serde_json::to_vec(&body).expect("json")
}

#[tokio::test]
async fn people_known_by_user_id_are_exported_and_erased_under_every_identifier() {
    let (cfg, ingest, sink) = pipeline().await;
    let now = now_secs() - 300;
    assert_eq!(post_signed(ingest.addr, &bsuid_body(now)).await.status, 200);
    let sql = "SELECT count() FROM message_status";
    assert_eq!(wait_for_scalar(&cfg, sql, 4, WAIT).await, 4);
    assert_eq!(
        wait_for_scalar(&cfg, "SELECT count() FROM inbound_message", 1, WAIT).await,
        1
    );
    sink.stop().await;
    ingest.stop().await;

    // Username user: found by user id (or parent id), in both tables.
    let username_user = user_hash("US.13491208655302741918");
    let rows = export_rows(&cfg, &[username_user]).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let rows = export_rows(&cfg, &[user_hash("US.ENT.11815799212886844830")]).await;
    assert_eq!(
        rows.len(),
        2,
        "the parent id leads to the same rows: {rows:?}"
    );
    // Number and user id: the number leads to the row that carries only the user id.
    let rows = export_rows(&cfg, &[phone_hash(&customer(1))]).await;
    assert_eq!(
        rows.len(),
        2,
        "linked through the row carrying both: {rows:?}"
    );
    // A group is not a person: its row names nobody.
    let group = ch_text(
        &cfg,
        "SELECT recipient_type, person_hash, user_hash, person_masked FROM message_status WHERE recipient_type = 'group' FORMAT TSV",
    )
    .await;
    assert_eq!(group, "group\t\t\t\n");

    // The binary, with identifiers on stdin (never on argv).
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bluetick"))
        .args(["erase", "--stdin", "--settle-secs", "0"])
        .env("BLUETICK_CLICKHOUSE_URL", &cfg.clickhouse.url)
        .env("BLUETICK_CLICKHOUSE_DATABASE", &cfg.clickhouse.database)
        .env("BLUETICK_PEPPER", PEPPER)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("erase");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(
            stdin,
            "# erasure requests\nUS.13491208655302741918\n{}",
            customer(1)
        )
        .expect("write");
    }
    let out = child.wait_with_output().expect("erase runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("message_status: 3 rows erased, 0 remain"),
        "{stdout}"
    );
    assert!(
        stdout.contains("inbound_message: 1 rows erased, 0 remain"),
        "{stdout}"
    );
    assert_eq!(
        scalar(&cfg, "SELECT count() FROM message_status").await,
        1,
        "the group's row"
    );
    assert_eq!(scalar(&cfg, "SELECT count() FROM inbound_message").await, 0);
    let (findings, _) = scan_tables(
        &cfg,
        &["SECRET", "@secret", "US.", "IN.", "120363040000000000"],
    )
    .await;
    assert!(findings.is_empty(), "{findings:#?}");
    drop_database(&cfg).await;
}

/// Erasure holds against the whole events topic read again by a new consumer group: the
/// person's rows stay at zero, everyone else's come back exactly.
#[tokio::test]
async fn an_erased_person_stays_erased_when_the_topic_is_replayed() {
    let (cfg, ingest, sink) = pipeline().await;
    let now = now_secs() - 900;
    let person = customer(7);
    let mut statuses = Vec::new();
    for m in 0..5 {
        for (k, status) in ["sent", "delivered", "read"].into_iter().enumerate() {
            statuses.push(Status {
                message_id: wamid(&person, &format!("E{m}")),
                status,
                ts: now + m + k as u64,
                number: person.clone(),
            });
        }
    }
    for i in 0..30 {
        statuses.push(Status {
            message_id: wamid(&customer(100 + i), &format!("K{i}")),
            status: "sent",
            ts: now + i as u64,
            number: customer(100 + i),
        });
    }
    assert_eq!(
        post_signed(ingest.addr, &status_body(&statuses))
            .await
            .status,
        200
    );
    let sql = "SELECT count() FROM message_status FINAL";
    assert_eq!(wait_for_scalar(&cfg, sql, 45, WAIT).await, 45);
    sink.stop().await;

    let report = bluetick::erase::run(&cfg, &[phone_hash(&person)], waits(), &mut Vec::new())
        .await
        .expect("erase");
    assert_eq!(report.removed["message_status"], 15);
    // A message of theirs that Meta delivers after the erasure is theirs anew: kept.
    let later = vec![Status {
        message_id: wamid(&person, "AFTER"),
        status: "sent",
        ts: now_secs() + 5,
        number: person.clone(),
    }];
    assert_eq!(
        post_signed(ingest.addr, &status_body(&later)).await.status,
        200
    );

    let mut replay = cfg.clone();
    replay.sink.group_id = unique("replay");
    let again = Sink::start(&replay).await;
    let (high, done) = wait_committed(
        &cfg.kafka.brokers,
        &replay.sink.group_id,
        &cfg.kafka.events_topic,
        WAIT,
    )
    .await;
    assert_eq!(done, high, "the new group read the whole topic");
    let totals = again.stop().await;
    ingest.stop().await;
    assert_eq!(totals.erased, 15, "{totals:?}");
    let theirs = format!(
        "SELECT count() FROM message_status WHERE person_hash = '{}'",
        phone_hash(&person)
    );
    assert_eq!(
        scalar(&cfg, &theirs).await,
        1,
        "only the message after the erasure"
    );
    assert_eq!(
        scalar(&cfg, "SELECT count() FROM message_status FINAL").await,
        31
    );
    drop_database(&cfg).await;
}

/// `migrate` sets `retention.ms` on the topics it creates and on topics that exist without it.
#[tokio::test]
async fn migrate_leaves_every_topic_with_the_configured_retention() {
    let mut cfg = config();
    cfg.kafka.retention_ms = 2 * 86_400_000;
    cfg.kafka.dead_letter_retention_ms = 86_400_000;
    // An events topic created before retention was set (as older releases did).
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &cfg.kafka.brokers)
            .create()
            .expect("admin");
    let opts = rdkafka::admin::AdminOptions::new();
    let bare = rdkafka::admin::NewTopic::new(
        &cfg.kafka.events_topic,
        cfg.kafka.partitions,
        rdkafka::admin::TopicReplication::Fixed(1),
    );
    admin.create_topics([&bare], &opts).await.expect("create");
    let mut out = Vec::new();
    bluetick::migrate::topics(&cfg, &mut out)
        .await
        .expect("topics");
    let text = String::from_utf8(out).expect("utf-8");
    assert!(
        text.contains(&format!("retention.ms: unset -> {}", 2 * 86_400_000)),
        "{text}"
    );
    for (topic, want) in [
        (&cfg.kafka.events_topic, 2 * 86_400_000),
        (&cfg.kafka.security_topic, 2 * 86_400_000),
        (&cfg.kafka.dead_letter_topic, 86_400_000),
    ] {
        let configs = bluetick::kafka::topics::describe(&admin, topic, Duration::from_secs(10))
            .await
            .expect("describe");
        let got = configs
            .iter()
            .find(|(k, _)| k == "retention.ms")
            .map(|(_, v)| v.clone());
        assert_eq!(got, Some(want.to_string()), "{topic}");
    }
    // Run again: nothing to change.
    let mut out = Vec::new();
    bluetick::migrate::topics(&cfg, &mut out)
        .await
        .expect("topics");
    assert!(!String::from_utf8(out).expect("utf-8").contains("->"));
}

/// Rows and events written before ids were pseudonymised: `migrate` re-keys the rows, the
/// sink keys version 1 events as it reads them; both end up with the same key.
#[tokio::test]
async fn rows_and_events_from_before_keys_are_rekeyed() {
    let mut cfg = config();
    sink_config(&mut cfg);
    migrate(&cfg).await;
    let old = wamid(&customer(3), "LEGACY1");
    let reply = wamid(&customer(3), "LEGACY2");
    let ts = now_secs() - 100;
    ch_text(
        &cfg,
        &format!(
            "INSERT INTO message_status (event_id, ts, message_id, status) VALUES ('e1', {ts}, '{old}', 'sent')"
        ),
    )
    .await;
    ch_text(
        &cfg,
        &format!(
            "INSERT INTO inbound_message (event_id, ts, message_id, context_message_id) VALUES ('e2', {ts}, '{reply}', '{old}')"
        ),
    )
    .await;
    let mut out = Vec::new();
    bluetick::migrate::run(&cfg, &mut out)
        .await
        .expect("migrate re-keys");
    let text = String::from_utf8(out).expect("utf-8");
    assert!(
        text.contains("message_status: 1 rows written before schema 004 re-keyed"),
        "{text}"
    );
    assert_eq!(
        ch_text(&cfg, "SELECT message_id FROM message_status FORMAT TSV")
            .await
            .trim(),
        key(&old)
    );
    assert_eq!(
        ch_text(
            &cfg,
            "SELECT message_id, context_message_id FROM inbound_message FORMAT TSV"
        )
        .await,
        format!("{}\t{}\n", key(&reply), key(&old))
    );

    // A version 1 event still on the topic: the sink keys its raw id on the way in.
    let v1 = format!(
        r#"{{"v":1,"id":"0000000000000000000000000000beef","kind":"status","received_ms":{},"ts":{ts},"waba_id":"1","field":"messages","message_id":"{old}","status":"read"}}"#,
        ts * 1000
    );
    let producer: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &cfg.kafka.brokers)
        .create()
        .expect("producer");
    bluetick::kafka::topics::ensure(&cfg.kafka, Duration::from_secs(10))
        .await
        .expect("topics");
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(1)).ok();
    producer
        .send(
            rdkafka::producer::BaseRecord::<[u8], [u8]>::to(&cfg.kafka.events_topic)
                .payload(v1.as_bytes()),
        )
        .expect("enqueue");
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).expect("flush");
    let sink = Sink::start(&cfg).await;
    let sql = format!(
        "SELECT count() FROM message_status WHERE message_id = '{}' AND status = 'read'",
        key(&old)
    );
    assert_eq!(wait_for_scalar(&cfg, &sql, 1, WAIT).await, 1);
    sink.stop().await;
    let (findings, _) = scan_tables(&cfg, &["wamid."]).await;
    assert!(findings.is_empty(), "{findings:#?}");
    drop_database(&cfg).await;
}
