//! The daily aggregates answer exactly what the raw rows answer. A generated data set with
//! Meta's duplicates (every row stored one to three times, in separate inserts), statuses out
//! of order, skipped `delivered`s, failures, several tenants, WABAs, numbers and markets, calls
//! with repeated terminate events and repeated opt-outs is rolled up; then every dashboard panel
//! that reads an aggregate is compared with the same question asked of the raw rows, on
//! ClickHouse 18.16 and on the current engine. A second test runs the pipeline: the sink keeps
//! the aggregates as rows arrive, and an erasure recounts them so the person is gone from them too.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const FROM: u64 = 1_749_945_600; // 2025-06-15 00:00:00 UTC
const DAYS: u64 = 3;

/// A small deterministic generator (xorshift), so the data set is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Raw rows as INSERT statements: each row one to three times, the copies in separate
/// statements, the statements shuffled (arrival order is not event order).
fn data_set() -> Vec<String> {
    let mut rng = Rng(0x5eed_a11e);
    let mut rows: Vec<String> = Vec::new();
    let wabas = [("w1", "acme"), ("w2", "globex")];
    let phones = ["p1", "p2", "p3"];
    let markets = ["91", "44", "55"];
    for m in 0..400u64 {
        let (waba, tenant) = wabas[rng.below(2) as usize];
        let phone = rng.pick(&phones);
        let market = rng.pick(&markets);
        let category = rng.pick(&["marketing", "utility", "authentication"]);
        let pricing = rng.pick(&["regular", "regular", "free_customer_service"]);
        let t0 = FROM + rng.below(DAYS * 86_400 - 7_200);
        let mut statuses = vec![("sent", t0, 0i32, "")];
        match rng.below(10) {
            0 => statuses.push(("failed", t0 + 5, 131_026, "Message undeliverable")),
            1 => statuses.push(("failed", t0 + 9, 131_050, "User stopped marketing")),
            2 => statuses.push(("read", t0 + 40, 0, "")), // delivered skipped
            3..=5 => statuses.push(("delivered", t0 + 20, 0, "")),
            _ => {
                statuses.push(("delivered", t0 + 20, 0, ""));
                // Read up to a day later: sometimes on the next day.
                statuses.push(("read", t0 + 60 + rng.below(86_400), 0, ""));
            }
        }
        for (status, ts, code, title) in statuses {
            let row = format!(
                "INSERT INTO message_status (event_id, ts, received_ms, waba_id, \
                 phone_number_id, message_id, status, pricing_category, pricing_type, \
                 billable, error_code, error_title, tenant, country_code) VALUES \
                 ('e{m}{status}', {ts}, {ts}000, '{waba}', '{phone}', 'm{m}', '{status}', \
                 '{category}', '{pricing}', 1, {code}, '{title}', '{tenant}', '{market}')"
            );
            for _ in 0..=rng.below(3) {
                rows.push(row.clone());
            }
        }
    }
    for i in 0..150u64 {
        let (waba, tenant) = wabas[rng.below(2) as usize];
        let ad = if rng.below(4) == 0 {
            "120208771234567890"
        } else {
            ""
        };
        let row = format!(
            "INSERT INTO inbound_message (event_id, ts, received_ms, waba_id, phone_number_id, \
             message_id, message_type, tenant, country_code, ad_source_id, from_ad) VALUES \
             ('i{i}', {ts}, 1, '{waba}', '{phone}', 'x{i}', '{kind}', '{tenant}', '{market}', \
             '{ad}', {from_ad})",
            ts = FROM + rng.below(DAYS * 86_400),
            phone = rng.pick(&phones),
            kind = rng.pick(&["text", "image", "interactive", "reaction"]),
            market = rng.pick(&markets),
            from_ad = u8::from(!ad.is_empty()),
        );
        for _ in 0..=rng.below(2) {
            rows.push(row.clone());
        }
    }
    for c in 0..60u64 {
        let (waba, tenant) = wabas[rng.below(2) as usize];
        let phone = rng.pick(&phones);
        let direction = rng.pick(&["USER_INITIATED", "BUSINESS_INITIATED"]);
        let status = rng.pick(&["COMPLETED", "COMPLETED", "FAILED"]);
        let ts = FROM + rng.below(DAYS * 86_400 - 600);
        let duration = if status == "COMPLETED" {
            5 + rng.below(600)
        } else {
            0
        };
        let call = |event: &str, st: &str, at: u64, d: u64| {
            format!(
                "INSERT INTO call_event (event_id, ts, kind, waba_id, phone_number_id, tenant, \
                 call_id, update_event, status, direction, duration_s, country_code) VALUES \
                 ('c{c}{event}', {at}, 'call', '{waba}', '{phone}', '{tenant}', 'k{c}', '{event}', \
                 '{st}', '{direction}', {d}, '91')"
            )
        };
        rows.push(call("connect", "", ts, 0));
        for _ in 0..=rng.below(3) {
            rows.push(call("terminate", status, ts + duration, duration));
        }
    }
    for o in 0..40u64 {
        let (waba, tenant) = wabas[rng.below(2) as usize];
        let row = format!(
            "INSERT INTO opt_out (event_id, ts, waba_id, phone_number_id, tenant, category, \
             preference, country_code) VALUES ('o{o}', {ts}, '{waba}', '{phone}', '{tenant}', \
             'marketing_messages', '{pref}', '44')",
            ts = FROM + rng.below(DAYS * 86_400),
            phone = rng.pick(&phones),
            pref = rng.pick(&["stop", "stop", "resume"]),
        );
        for _ in 0..=rng.below(2) {
            rows.push(row.clone());
        }
    }
    // Arrival order is not event order.
    for i in (1..rows.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        rows.swap(i, j);
    }
    rows
}

/// The same question, asked of the raw rows, for each panel (by id and target) that reads an
/// aggregate. `{range}` is the panels' time range over `ts`.
fn raw_questions() -> BTreeMap<(u64, usize), &'static str> {
    let f = "ts >= toDateTime(1749945600) AND ts <= toDateTime(1750204799)";
    let questions: [((u64, usize), String); 13] = [
        ((1, 0), format!("SELECT toDateTime(toDate(ts)) AS time, uniqExactIf(message_id, status = 'sent'), uniqExactIf(message_id, status = 'delivered'), uniqExactIf(message_id, status = 'read'), uniqExactIf(message_id, status = 'failed') FROM message_status WHERE {f} GROUP BY toDate(ts) ORDER BY time")),
        ((3, 0), format!("SELECT toDateTime(toDate(ts)) AS time, uniqExactIf(message_id, status = 'delivered') / greatest(uniqExactIf(message_id, status = 'sent'), 1), uniqExactIf(message_id, status = 'read') / greatest(uniqExactIf(message_id, status = 'delivered'), 1) FROM message_status WHERE {f} GROUP BY toDate(ts) ORDER BY time")),
        ((4, 0), format!("SELECT error_code, max(error_title), uniqExact(message_id) AS n FROM message_status WHERE status = 'failed' AND {f} GROUP BY error_code ORDER BY n DESC, error_code LIMIT 20")),
        ((5, 0), format!("SELECT pricing_category, uniqExactIf(message_id, status = 'sent') AS s, uniqExactIf(message_id, status = 'delivered'), uniqExactIf(message_id, status = 'read'), uniqExactIf(message_id, status = 'failed'), uniqExactIf(message_id, status = 'delivered' AND (pricing_type = 'regular' OR (pricing_type = '' AND billable = 1))) FROM message_status WHERE {f} GROUP BY pricing_category ORDER BY s DESC, pricing_category")),
        ((6, 0), format!("SELECT phone_number_id, uniqExactIf(message_id, status = 'sent') AS s, uniqExactIf(message_id, status = 'delivered') / greatest(s, 1), uniqExactIf(message_id, status = 'read') / greatest(uniqExactIf(message_id, status = 'delivered'), 1), uniqExactIf(message_id, status = 'failed') FROM message_status WHERE {f} GROUP BY phone_number_id ORDER BY s DESC, phone_number_id LIMIT 50")),
        ((8, 0), format!("SELECT toDateTime(toDate(ts)) AS time, message_type, uniqExact(message_id) FROM inbound_message WHERE {f} GROUP BY toDate(ts), message_type ORDER BY time, message_type")),
        ((9, 0), format!("SELECT toDateTime(day) AS time, status, count() FROM (SELECT call_id, toDate(min(ts)) AS day, any(status) AS status FROM call_event WHERE kind = 'call' AND update_event = 'terminate' AND {f} GROUP BY call_id) GROUP BY day, status ORDER BY day, status")),
        ((10, 0), format!("SELECT direction, count() AS n, round(sum(d) / greatest(n, 1), 1), max(d) FROM (SELECT call_id, any(direction) AS direction, max(duration_s) AS d FROM call_event WHERE kind = 'call' AND update_event = 'terminate' AND status = 'COMPLETED' AND {f} GROUP BY call_id) GROUP BY direction ORDER BY n DESC, direction")),
        ((11, 0), format!("SELECT toDateTime(toDate(ts)) AS time, phone_number_id, uniqExactIf(event_id, preference = 'stop'), uniqExactIf(event_id, preference = 'resume') FROM opt_out WHERE {f} GROUP BY toDate(ts), phone_number_id ORDER BY time, phone_number_id")),
        ((11, 1), format!("SELECT toDateTime(toDate(ts)) AS time, phone_number_id, uniqExact(message_id) FROM message_status WHERE status = 'failed' AND error_code = 131050 AND {f} GROUP BY toDate(ts), phone_number_id ORDER BY time, phone_number_id")),
        ((13, 0), format!("SELECT toDateTime(toDate(ts)) AS time, ad_source_id, uniqExact(message_id) FROM inbound_message WHERE ad_source_id != '' AND {f} GROUP BY toDate(ts), ad_source_id ORDER BY time, ad_source_id")),
        ((15, 0), format!("SELECT toDateTime(day) AS time, pricing_category, currency, sum(messages * price_micros) / 1000000 FROM (SELECT toDate(ts) AS day, tenant, pricing_category, country_code, uniqExactIf(message_id, status = 'delivered' AND (pricing_type = 'regular' OR (pricing_type = '' AND billable = 1))) AS messages FROM message_status WHERE {f} GROUP BY day, tenant, pricing_category, country_code) AS billed ANY LEFT JOIN (SELECT day, country_code, pricing_category, currency, price_micros FROM rate_card_daily FINAL) AS rates USING (day, country_code, pricing_category) GROUP BY day, pricing_category, currency ORDER BY day, pricing_category, currency")),
        ((16, 0), format!("SELECT tenant, country_code AS market, currency, sum(messages), sum(messages * price_micros) / 1000000 AS spend FROM (SELECT toDate(ts) AS day, tenant, pricing_category, country_code, uniqExactIf(message_id, status = 'delivered' AND (pricing_type = 'regular' OR (pricing_type = '' AND billable = 1))) AS messages FROM message_status WHERE {f} GROUP BY day, tenant, pricing_category, country_code) AS billed ANY LEFT JOIN (SELECT day, country_code, pricing_category, currency, price_micros FROM rate_card_daily FINAL) AS rates USING (day, country_code, pricing_category) GROUP BY tenant, market, currency ORDER BY spend DESC, tenant, market, currency")),
    ];
    questions
        .into_iter()
        .map(|(k, v)| (k, &*Box::leak(v.into_boxed_str())))
        .collect()
}

/// Each aggregate panel's SQL, the variables at "All" and the range at the data set's days.
fn panel_queries() -> BTreeMap<(u64, usize), String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/dashboards/delivery-analytics.json"
    );
    let dash: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("JSON");
    let mut out = BTreeMap::new();
    for p in dash["panels"].as_array().expect("panels") {
        let id = p["id"].as_u64().expect("id");
        for (i, t) in p["targets"].as_array().expect("targets").iter().enumerate() {
            let sql = t["rawSql"].as_str().expect("rawSql");
            let reads_aggregate = bluetick::rollup::aggregate_tables()
                .map(|(name, _)| name)
                .chain(["spend_daily"])
                .any(|name| sql.contains(&format!("FROM {name}")));
            if !reads_aggregate {
                continue;
            }
            let sql = common::chdb::variables_at_all(sql)
                .replace("$__fromTime", "toDateTime(1749945600)")
                .replace("$__toTime", "toDateTime(1750204799)")
                .replace("$__timeFilter(ts)", "1");
            out.insert((id, i), sql);
        }
    }
    out
}

#[tokio::test]
async fn every_aggregate_panel_answers_what_the_raw_rows_answer_on_both_clickhouse_versions() {
    let mut cfg = config();
    cfg.clickhouse.url = clickhouse_url();
    let db = cfg.clickhouse.database.clone();
    let mut script = common::chdb::schema_statements();
    script.extend(data_set());
    // Rolled up twice: a later version replaces an earlier one.
    for version in [1, 2] {
        for table in bluetick::model::Table::ALL {
            for day in FROM / 86_400..FROM / 86_400 + DAYS {
                script.extend(bluetick::rollup::statements(table, day, version));
            }
        }
    }
    script.push(
        "INSERT INTO rate_card_daily (day, country_code, pricing_category, currency, \
         price_micros) VALUES ('2025-06-15', '91', 'marketing', 'INR', 785000), \
         ('2025-06-16', '91', 'marketing', 'INR', 785000), ('2025-06-17', '91', 'marketing', 'INR', 800000), \
         ('2025-06-15', '44', 'utility', 'GBP', 18000), ('2025-06-16', '44', 'utility', 'GBP', 18000)"
            .into(),
    );
    let panels = panel_queries();
    let raw = raw_questions();
    assert_eq!(
        panels.keys().collect::<Vec<_>>(),
        raw.keys().collect::<Vec<_>>(),
        "every aggregate panel has its raw question"
    );
    let first = script.len();
    for (key, sql) in &panels {
        script.push(sql.clone());
        script.push(raw[key].to_string());
    }
    // The aggregates are small: the panels read a sliver of the rows the raw questions read.
    script.push(
        "SELECT (SELECT count() FROM status_daily FINAL), (SELECT count() FROM message_status)"
            .into(),
    );

    let server = run_on_server(&cfg, &script).await;
    let statements = script.clone();
    let current = tokio::task::spawn_blocking(move || chdb::run(&db, &statements))
        .await
        .expect("chdb thread");
    for (n, (key, sql)) in panels.iter().enumerate() {
        let (agg, raw_at) = (first + 2 * n, first + 2 * n + 1);
        assert!(
            !server[agg].trim().is_empty(),
            "panel {key:?} answered nothing: {sql}"
        );
        assert_eq!(server[agg], server[raw_at], "18.16, panel {key:?}: {sql}");
        assert_eq!(
            current[agg], current[raw_at],
            "current, panel {key:?}: {sql}"
        );
        assert_eq!(
            server[agg], current[agg],
            "18.16 vs current, panel {key:?}: {sql}"
        );
    }
    let sizes = server.last().expect("sizes").trim().to_string();
    let (agg_rows, raw_rows) = sizes.split_once('\t').expect("two counts");
    let (agg_rows, raw_rows): (u64, u64) =
        (agg_rows.parse().expect("n"), raw_rows.parse().expect("n"));
    assert!(
        agg_rows * 5 < raw_rows,
        "aggregate {agg_rows} rows vs raw {raw_rows}"
    );
    drop_database(&cfg).await;
}

#[tokio::test]
async fn the_sink_keeps_the_aggregates_and_an_erasure_recounts_them() {
    let mut cfg = config();
    sink_config(&mut cfg);
    cfg.sink.rollup_interval_ms = 300;
    migrate(&cfg).await;
    let ingest = Server::start(&cfg).await;
    let sink = Sink::start(&cfg).await;
    let now = now_secs() - 120;
    // Two people; the second is the only one on market 44.
    let list: Vec<Status> = (0..6u64)
        .map(|i| {
            let number = if i < 4 {
                "919812000001"
            } else {
                "447700900777"
            };
            Status {
                message_id: wamid(number, &format!("AG{i}")),
                status: if i % 2 == 0 { "sent" } else { "delivered" },
                ts: now + i,
                number: number.into(),
            }
        })
        .collect();
    let body = status_body(&list);
    // Meta retries: the same webhook three times.
    for _ in 0..3 {
        assert_eq!(post_signed(ingest.addr, &body).await.status, 200);
    }
    let sent = "SELECT sum(sent) FROM status_daily FINAL";
    assert_eq!(
        wait_for_scalar(&cfg, sent, 3, Duration::from_secs(60)).await,
        3
    );
    let market =
        "SELECT sum(sent) + sum(delivered) FROM status_daily FINAL WHERE country_code = '44'";
    assert_eq!(scalar(&cfg, market).await, 2);
    // Read back as an auditor would, aggregates included: no number, no id that decodes to
    // one, no content marker in any string cell of any table.
    let (found, cells) = scan_tables(&cfg, &["SECRET"]).await;
    assert!(found.is_empty(), "{found:#?}");
    let aggregate_cells = "SELECT count() FROM status_daily";
    assert!(cells > 0 && scalar(&cfg, aggregate_cells).await > 0);

    sink.stop().await;
    let person = bluetick::privacy::Pepper::new(PEPPER.as_bytes()).hash_phone("447700900777");
    let waits = bluetick::erase::Waits {
        mutation: Duration::from_secs(60),
        settle: Duration::from_millis(200),
    };
    let mut out = Vec::new();
    bluetick::erase::run(&cfg, &[person], waits, &mut out)
        .await
        .expect("erase");
    let said = String::from_utf8_lossy(&out);
    assert!(said.contains("daily aggregates recounted"), "{said}");
    // Their market's group is counted as zero now, the other person's unchanged.
    assert_eq!(scalar(&cfg, market).await, 0);
    assert_eq!(scalar(&cfg, sent).await, 2);
    ingest.stop().await;
    drop_database(&cfg).await;
}

#[tokio::test]
async fn a_loaded_rate_card_prices_the_billable_messages_and_a_new_one_replaces_it() {
    let mut cfg = config();
    cfg.clickhouse.url = clickhouse_url();
    migrate(&cfg).await;
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/rate-card.example.csv");
    let mut out = Vec::new();
    let n = bluetick::rate_card::run(&cfg, example, false, &mut out)
        .await
        .expect("the example card loads");
    assert_eq!(n, 10);
    ch_text(
        &cfg,
        "INSERT INTO status_daily (day, tenant, pricing_category, country_code, billable, version) \
         VALUES ('2026-03-01', 'acme', 'marketing', '91', 1000, 1), \
         ('2026-08-01', 'acme', 'marketing', '91', 10, 1), ('2026-03-01', 'acme', 'service', '91', 7, 1)",
    )
    .await;
    let spend = "SELECT day, pricing_category, messages, currency, spend_micros FROM spend_daily \
                 ORDER BY day, pricing_category FORMAT TSV";
    assert_eq!(
        ch_text(&cfg, spend).await,
        "2026-03-01\tmarketing\t1000\tINR\t800000000\n\
         2026-03-01\tservice\t7\t\t0\n\
         2026-08-01\tmarketing\t10\tINR\t8600000\n",
        "the rate of each day; a category without a rate shows as unpriced"
    );
    // A new card without India's marketing rates: they no longer price anything.
    let dir = common::procs::scratch_dir("rates");
    let card = dir.join("card.csv");
    std::fs::write(&card, "91,utility,2026-01-01,INR,0.12\n").expect("card");
    bluetick::rate_card::run(&cfg, &card.to_string_lossy(), false, &mut Vec::new())
        .await
        .expect("reload");
    let priced = ch_text(&cfg, "SELECT sum(spend_micros) FROM spend_daily FORMAT TSV").await;
    assert_eq!(priced, "0\n");
    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "91,utility,2026-01-01,INR,0.12\n91,utility,yesterday,INR,1\n",
    )
    .expect("card");
    let e = bluetick::rate_card::run(&cfg, &bad.to_string_lossy(), false, &mut Vec::new())
        .await
        .expect_err("a bad line");
    assert!(e.to_string().contains("line 2"), "{e}");
    assert_eq!(
        scalar(&cfg, "SELECT count() FROM rate_card FINAL").await,
        1,
        "nothing of a bad card is loaded"
    );
    drop_database(&cfg).await;
}
