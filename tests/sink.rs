//! The whole pipeline against the real broker and the real ClickHouse server: signed webhooks
//! in at ingest, rows out in ClickHouse — masked, exact under duplicates and out-of-order
//! statuses, held through a ClickHouse outage, with refused rows dead-lettered.

mod common;

use bluetick::privacy::Pepper;
use common::*;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use std::collections::BTreeMap;
use std::time::Duration;

const MESSAGES: usize = 200;
const WAIT: Duration = Duration::from_secs(60);

fn number(i: usize) -> String {
    format!("9198{:08}", 20_000_000 + i)
}

/// Message `i` reaches: sent+delivered+read (i%4==0), sent+delivered (1), sent (2),
/// sent+failed (3). Returns the statuses, newest first, so they arrive out of order.
fn lifecycle(tag: &str, base: u64) -> Vec<Status> {
    let mut out = Vec::new();
    for i in 0..MESSAGES {
        let reached: &[(&str, u64)] = match i % 4 {
            0 => &[("read", 20), ("delivered", 10), ("sent", 0)],
            1 => &[("delivered", 10), ("sent", 0)],
            2 => &[("sent", 0)],
            _ => &[("failed", 5), ("sent", 0)],
        };
        for (status, after) in reached {
            out.push(Status {
                message_id: wamid(&number(i), &format!("{tag}{i:05}")),
                status,
                ts: base + i as u64 + after,
                number: number(i),
            });
        }
    }
    // Latest statuses first: read before delivered before sent.
    out.sort_by_key(|s| std::cmp::Reverse(s.ts));
    out
}

/// Every table's full contents as text.
async fn dump(cfg: &bluetick::config::Config) -> String {
    let mut all = String::new();
    for t in bluetick::model::tables::Table::ALL {
        all += &ch_text(cfg, &format!("SELECT * FROM {} FORMAT TSV", t.name())).await;
    }
    all
}

#[tokio::test]
async fn webhooks_land_once_masked_and_exact_under_duplicates_and_disorder() {
    let (cfg, ingest, sink) = pipeline().await;

    let statuses = lifecycle("e2e", now_secs() - 3_600);
    let mut posts = 0;
    for chunk in statuses.chunks(50) {
        let body = status_body(chunk);
        // Meta retries: every request arrives twice.
        for _ in 0..2 {
            assert_eq!(post_signed(ingest.addr, &body).await.status, 200);
            posts += 1;
        }
    }
    let senders: Vec<(String, String)> = (0..10)
        .map(|i| (number(i), wamid(&number(i), &format!("IN{i}"))))
        .collect();
    let inbound = inbound_body(&senders, now_secs() - 60);
    assert_eq!(post_signed(ingest.addr, &inbound).await.status, 200);
    assert_eq!(post_signed(ingest.addr, &inbound).await.status, 200);
    let forged = post(
        ingest.addr,
        &inbound,
        &[
            ("content-type", "application/json"),
            ("x-hub-signature-256", "sha256=00"),
        ],
    )
    .await;
    assert_eq!(forged.status, 401);

    let expected = statuses.len() as u64;
    assert_eq!(expected, 400);
    let got = wait_for_scalar(
        &cfg,
        "SELECT uniqExact(event_id) FROM message_status",
        expected,
        WAIT,
    )
    .await;
    assert_eq!(got, expected, "{posts} posts");
    assert_eq!(
        wait_for_scalar(
            &cfg,
            "SELECT uniqExact(event_id) FROM inbound_message",
            10,
            WAIT
        )
        .await,
        10
    );
    assert_eq!(
        wait_for_scalar(&cfg, "SELECT count() FROM security_event", 1, WAIT).await,
        1
    );
    assert_eq!(
        scalar(&cfg, "SELECT count() FROM message_status FINAL").await,
        expected
    );
    assert!(scalar(&cfg, "SELECT count() FROM message_status").await >= expected);

    // Latest status per message despite read arriving before delivered and sent.
    let latest = ch_text(
        &cfg,
        "SELECT status, count() FROM message_latest_status GROUP BY status ORDER BY status FORMAT TSV",
    )
    .await;
    assert_eq!(latest, "delivered\t50\nfailed\t50\nread\t50\nsent\t50\n");
    let funnel = ch_text(
        &cfg,
        "SELECT sum(messages), sum(sent), sum(delivered), sum(read), sum(failed), sum(billable) \
         FROM daily_funnel FORMAT TSV",
    )
    .await;
    assert_eq!(funnel, "200\t200\t100\t50\t50\t200\n");

    // Masked and keyed, never the number, never content.
    let unmasked = scalar(
        &cfg,
        "SELECT count() FROM message_status WHERE NOT match(person_masked, '^91X{6}[0-9]{4}$')",
    )
    .await;
    assert_eq!(unmasked, 0);
    let pepper = Pepper::new(PEPPER.as_bytes());
    let hash = pepper.hash_phone(&number(4)).to_hex();
    let sql = format!(
        "SELECT toUInt64(count()) FROM message_status FINAL WHERE person_hash = '{}'",
        hash.as_str()
    );
    assert_eq!(
        scalar(&cfg, &sql).await,
        3,
        "sent, delivered, read of message 4"
    );
    let all = dump(&cfg).await;
    assert!(!all.contains("SECRET"), "content reached ClickHouse");
    for i in 0..MESSAGES {
        assert!(!all.contains(&number(i)), "a raw number reached ClickHouse");
    }
    let failed = ch_text(
        &cfg,
        "SELECT DISTINCT error_code, error_title FROM message_status WHERE status = 'failed' FORMAT TSV",
    )
    .await;
    assert_eq!(failed, "131049\tNot delivered\n");

    let brokers = cfg.kafka.brokers.clone();
    let (high, done) =
        wait_committed(&brokers, &cfg.sink.group_id, &cfg.kafka.events_topic, WAIT).await;
    assert_eq!(done, high, "every record committed after its insert");
    let totals = sink.stop().await;
    assert_eq!(totals.dead_letters, 0);
    assert_eq!(
        totals.records,
        high as u64 + 1,
        "events + the security event"
    );

    // Kafka redelivers everything (a new group reads from the start): counts do not move.
    let mut replay = cfg.clone();
    replay.sink.group_id = unique("replay");
    let again = Sink::start(&replay).await;
    let (high, done) = wait_committed(
        &brokers,
        &replay.sink.group_id,
        &cfg.kafka.events_topic,
        WAIT,
    )
    .await;
    assert_eq!(done, high);
    let totals = again.stop().await;
    assert_eq!(totals.records, high as u64 + 1);
    assert_eq!(
        scalar(&cfg, "SELECT count() FROM message_status FINAL").await,
        expected
    );
    assert_eq!(
        ch_text(
            &cfg,
            "SELECT sum(messages), sum(sent), sum(delivered), sum(read), sum(failed), sum(billable) \
             FROM daily_funnel FORMAT TSV",
        )
        .await,
        funnel
    );
    assert_eq!(
        ch_text(
            &cfg,
            "SELECT status, count() FROM message_latest_status GROUP BY status ORDER BY status FORMAT TSV",
        )
        .await,
        latest
    );
    ingest.stop().await;
    drop_database(&cfg).await;
}

#[tokio::test]
async fn a_clickhouse_outage_holds_offsets_and_loses_nothing() {
    let mut cfg = config();
    sink_config(&mut cfg);
    migrate(&cfg).await;
    let direct = cfg.clone();
    let target = cfg
        .clickhouse
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("ClickHouse URL is http://host:port");
    let relay = Relay::start(target).await;
    cfg.clickhouse.url = format!("http://{}", relay.addr);
    let ingest = Server::start(&cfg).await;
    let sink = Sink::start(&cfg).await;
    let brokers = cfg.kafka.brokers.clone();
    let base = now_secs() - 600;
    let burst = |tag: &str| -> Vec<u8> {
        let list: Vec<Status> = (0..50)
            .map(|i| Status {
                message_id: wamid(&number(i as usize), &format!("{tag}{i}")),
                status: "delivered",
                ts: base + i,
                number: number(i as usize),
            })
            .collect();
        status_body(&list)
    };

    assert_eq!(post_signed(ingest.addr, &burst("before")).await.status, 200);
    let sql = "SELECT uniqExact(event_id) FROM message_status";
    assert_eq!(wait_for_scalar(&direct, sql, 50, WAIT).await, 50);
    wait_committed(&brokers, &cfg.sink.group_id, &cfg.kafka.events_topic, WAIT).await;

    relay.cut();
    assert_eq!(post_signed(ingest.addr, &burst("during")).await.status, 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        scalar(&direct, sql).await,
        50,
        "nothing can land while ClickHouse is cut off"
    );
    let (high, done) = group_progress(&brokers, &cfg.sink.group_id, &cfg.kafka.events_topic).await;
    // A webhook's 50 events travel as one record (see `model::record`).
    assert_eq!(high - done, 1, "the outage batch stays uncommitted");
    // Stopped in the middle of the outage: it must not commit what it could not store.
    let totals = sink.stop().await;
    assert_eq!(
        (totals.records, totals.rows),
        (1, 50),
        "only the first burst was stored"
    );
    let (_, still) = group_progress(&brokers, &cfg.sink.group_id, &cfg.kafka.events_topic).await;
    assert_eq!(still, done);

    relay.restore();
    let sink = Sink::start(&cfg).await;
    assert_eq!(wait_for_scalar(&direct, sql, 100, WAIT).await, 100);
    let (high, done) =
        wait_committed(&brokers, &cfg.sink.group_id, &cfg.kafka.events_topic, WAIT).await;
    assert_eq!(done, high);
    sink.stop().await;
    assert_eq!(
        scalar(&direct, "SELECT count() FROM message_status FINAL").await,
        100
    );
    ingest.stop().await;
    drop_database(&direct).await;
}

#[tokio::test]
async fn refused_rows_are_dead_lettered_with_a_reason_and_the_batch_goes_on() {
    let mut cfg = config();
    sink_config(&mut cfg);
    migrate(&cfg).await;
    // A rule ClickHouse itself enforces on content: it refuses any INSERT holding the poison
    // message (by the pseudonym stored for its id).
    let poison = wamid(&number(99), "POISON1");
    ch_text(
        &cfg,
        &format!(
            "ALTER TABLE message_status ADD COLUMN poison UInt8 \
             MATERIALIZED throwIf(message_id = '{}')",
            key(&poison)
        ),
    )
    .await;
    let ingest = Server::start(&cfg).await;
    let now = now_secs();
    let mut list: Vec<Status> = (0..20)
        .map(|i| Status {
            message_id: wamid(&number(i as usize), &format!("OK{i}")),
            status: "sent",
            ts: now - 100 + i,
            number: number(i as usize),
        })
        .collect();
    let odd = |id: &str, ts| Status {
        message_id: id.into(),
        status: "sent",
        ts,
        number: number(99),
    };
    let (future, expired) = (wamid(&number(99), "FUTURE"), wamid(&number(99), "EXPIRED"));
    list.insert(7, odd(&poison, now - 50));
    list.push(odd(&future, now + 3 * 86_400));
    list.push(odd(&expired, now - 100 * 86_400));
    assert_eq!(
        post_signed(ingest.addr, &status_body(&list)).await.status,
        200
    );
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &cfg.kafka.brokers)
        .create()
        .expect("producer");
    producer
        .send(BaseRecord::<[u8], [u8]>::to(&cfg.kafka.events_topic).payload(b"not an event"))
        .expect("enqueue");
    producer.flush(Duration::from_secs(10)).expect("flush");

    let sink = Sink::start(&cfg).await;
    let dead = consume(&cfg.kafka.brokers, &cfg.kafka.dead_letter_topic, 3, WAIT).await;
    let sql = "SELECT uniqExact(message_id) FROM message_status";
    assert_eq!(wait_for_scalar(&cfg, sql, 20, WAIT).await, 20);
    let totals = sink.stop().await;

    let reasons: BTreeMap<String, String> = dead
        .iter()
        .map(|r| {
            let header = |k: &str| {
                r.headers
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            assert!(header("bluetick-source").starts_with(&cfg.kafka.events_topic));
            // An event comes back as a record of its own, in the format it was written in.
            let id = match r.payload.first() {
                Some(b'{' | 0x00) => r.events()[0]["message_key"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                _ => r.text(),
            };
            (id, header("bluetick-error"))
        })
        .collect();
    assert_eq!(dead.len(), 3, "{reasons:?}");
    assert!(reasons[&key(&poison)].contains("throwIf"), "{reasons:?}");
    assert!(
        reasons[&key(&future)].contains("after the sink's clock"),
        "{reasons:?}"
    );
    assert!(
        reasons["not an event"].contains("undecodable event"),
        "{reasons:?}"
    );
    let odd_rows = format!(
        "SELECT count() FROM message_status WHERE message_id IN ('{}', '{}', '{}')",
        key(&poison),
        key(&future),
        key(&expired)
    );
    assert_eq!(scalar(&cfg, &odd_rows).await, 0);
    assert_eq!(totals.dead_letters, 3);
    assert_eq!(totals.expired, 1, "past retention: skipped, not stored");
    assert_eq!(totals.rows, 20);
    ingest.stop().await;
    drop_database(&cfg).await;
}

/// A backlog of refusals spanning more days than one INSERT may touch (the 180-day security
/// table, read back after an outage of the sink, say): it is split into inserts of at most
/// `MAX_PARTITIONS_PER_INSERT` day partitions, and every row lands once.
#[tokio::test]
async fn a_batch_spanning_more_days_than_one_insert_may_touch_lands_whole() {
    use bluetick::model::SecurityEvent;
    use bluetick::sink::insert::MAX_PARTITIONS_PER_INSERT;
    const DAYS: u64 = 170;
    let mut cfg = config();
    sink_config(&mut cfg);
    // One batch for the whole backlog.
    cfg.sink.batch_max_age_ms = 2_000;
    migrate(&cfg).await;
    // What each INSERT was: a materialized column holds the size of the block it arrived in
    // (one INSERT of these rows is one block). 18.16 has no `max_partitions_per_insert_block`
    // to refuse a wider INSERT, so this is how the split shows there.
    ch_text(
        &cfg,
        "ALTER TABLE security_event ADD COLUMN insert_rows UInt64 MATERIALIZED blockSize()",
    )
    .await;
    // Ingest creates the topics, as it does in production.
    let ingest = Server::start(&cfg).await;
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &cfg.kafka.brokers)
        .create()
        .expect("producer");
    let newest_ms = (now_secs() - 3_600) * 1_000;
    // One refusal a day for 170 days, oldest first: each row its own day partition.
    for day in (0..DAYS).rev() {
        let line = serde_json::to_string(&SecurityEvent {
            v: 1,
            received_ms: newest_ms - day * 86_400_000,
            source_ip: "203.0.113.0/24".into(),
            reason: "bad_signature".into(),
            route: "/webhook".into(),
            count: 1,
        })
        .expect("a security event serializes");
        producer
            .send(BaseRecord::<[u8], [u8]>::to(&cfg.kafka.security_topic).payload(line.as_bytes()))
            .expect("enqueue");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");

    let sink = Sink::start(&cfg).await;
    let days = "SELECT uniqExact(toDate(ts)) FROM security_event";
    assert_eq!(wait_for_scalar(&cfg, days, DAYS, WAIT).await, DAYS);
    let totals = sink.stop().await;
    assert!(DAYS as usize > MAX_PARTITIONS_PER_INSERT);
    assert_eq!((totals.rows, totals.dead_letters), (DAYS, 0));
    assert_eq!(
        scalar(&cfg, "SELECT count() FROM security_event").await,
        DAYS,
        "every refusal once"
    );
    let widest = "SELECT max(insert_rows) FROM security_event";
    assert!(
        scalar(&cfg, widest).await <= MAX_PARTITIONS_PER_INSERT as u64,
        "one row a day: no INSERT may hold more than {MAX_PARTITIONS_PER_INSERT} of them"
    );
    assert_eq!(
        totals.batches, 1,
        "the backlog came as one batch, so it had to be split"
    );
    ingest.stop().await;
    drop_database(&cfg).await;
}
