//! `bluetick-analytics`: how the analytics dashboard holds up at a BSP's scale.
//!
//! 1. Fills a database of its own with N days × M messages a day of realistic statuses
//!    (sent, delivered, read, failed; `delivered` sometimes skipped; reads up to a day later;
//!    a share of every status stored twice, as Meta's retries are; several tenants, WABAs,
//!    numbers, markets and pricing categories), plus inbound messages, calls and opt-outs,
//!    through the sink's own path: events encoded as ingest encodes them, framed into records,
//!    decoded, routed and inserted with the sink's RowBinary writer; then the daily aggregates
//!    rolled up as the sink does.
//! 2. Runs every panel of `deploy/grafana/dashboards/delivery-analytics.json` over the whole
//!    range `--runs` times and prints, per panel, latency p50 / p95, rows read (from
//!    `system.query_log`) and those rows as a share of the raw status rows in the range; the
//!    baseline is the funnel asked of the raw rows, in the same run; and bytes on disk per
//!    stored status row.
//!
//! Loopback ClickHouse only; the database is dropped at the end unless `--keep`.

use anyhow::Context;
use bluetick::clickhouse::ClickHouse;
use bluetick::config::Config;
use bluetick::model::record::RecordWriter;
use bluetick::model::{Event, EventId, EventKind, Table, EVENT_VERSION};
use bluetick::privacy::{IdKey, Pepper, Person};
use bluetick::sink::batch::{Batch, Source};
use bluetick::sink::erased::Erased;
use bluetick::sink::insert::Writer;
use bluetick::sink::route::{Rows, Window};
use clap::Parser;
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Fill ClickHouse through the sink's path, then time every analytics panel")]
struct Args {
    /// ClickHouse HTTP URL (loopback).
    #[arg(long, default_value = "http://127.0.0.1:8123")]
    clickhouse: String,
    /// Database to create, fill and (unless --keep) drop.
    #[arg(long, default_value = "bluetick_analytics_bench")]
    database: String,
    /// Days of traffic, ending today (UTC).
    #[arg(long, default_value_t = 30)]
    days: u64,
    /// Messages sent per day.
    #[arg(long, default_value_t = 1_000_000)]
    messages_per_day: u64,
    /// Share of statuses stored twice (Meta's retries).
    #[arg(long, default_value_t = 0.1)]
    duplicates: f64,
    /// Times each panel runs.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Use what the database holds (a previous --keep run).
    #[arg(long)]
    skip_fill: bool,
    /// Keep the database afterwards.
    #[arg(long)]
    keep: bool,
    #[arg(long, default_value_t = 0x5eed)]
    seed: u64,
}

const TENANTS: [(&str, &str, [&str; 3]); 5] = [
    (
        "acme",
        "100000000000001",
        ["200000000000011", "200000000000012", "200000000000013"],
    ),
    (
        "globex",
        "100000000000002",
        ["200000000000021", "200000000000022", "200000000000023"],
    ),
    (
        "initech",
        "100000000000003",
        ["200000000000031", "200000000000032", "200000000000033"],
    ),
    (
        "umbrella",
        "100000000000004",
        ["200000000000041", "200000000000042", "200000000000043"],
    ),
    (
        "hooli",
        "100000000000005",
        ["200000000000051", "200000000000052", "200000000000053"],
    ),
];
/// (calling code, a national number prefix, weight).
const MARKETS: [(&str, &str, u64); 5] = [
    ("91", "98", 50),
    ("62", "812", 20),
    ("55", "119", 15),
    ("44", "77", 10),
    ("1", "555", 5),
];
const CATEGORIES: [&str; 4] = ["marketing", "utility", "authentication", "service"];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.clickhouse.contains("127.0.0.1") || args.clickhouse.contains("localhost"),
        "loopback ClickHouse only"
    );
    let mut cfg = Config::default();
    cfg.clickhouse.url = args.clickhouse.clone();
    cfg.clickhouse.database = args.database.clone();
    for days in [
        &mut cfg.retention.message_status_days,
        &mut cfg.retention.inbound_message_days,
        &mut cfg.retention.call_event_days,
        &mut cfg.retention.opt_out_days,
    ] {
        *days = (*days).max(args.days as u32 + 2);
    }
    bluetick::migrate::run(&cfg, &mut std::io::sink())
        .await
        .context("migrate the bench database")?;
    let ch = ClickHouse::new(&cfg.clickhouse)?;
    let today = bluetick::clock::now_secs() / 86_400;
    let first = today + 1 - args.days;
    if !args.skip_fill {
        fill(&cfg, &ch, &args, first, today).await?;
    }
    measure(&ch, &args, first, today).await?;
    if !args.keep {
        ch.server()
            .query(&format!("DROP DATABASE IF EXISTS `{}`", args.database))
            .execute()
            .await?;
    }
    Ok(())
}

/// One message's fixed facts.
struct Message {
    tenant: usize,
    phone: usize,
    market: usize,
    category: &'static str,
    key: bluetick::privacy::Pseudonym,
    person: Person,
}

async fn fill(
    cfg: &Config,
    ch: &ClickHouse,
    args: &Args,
    first: u64,
    last: u64,
) -> anyhow::Result<()> {
    let pepper = Pepper::new(b"bench-pepper-0123456789");
    let id_key = IdKey::new(b"bench-id-key-0123456789");
    let writer = Writer::new(ch.clone(), Duration::from_secs(300));
    let mut rng = fastrand::Rng::with_seed(args.seed);
    let started = Instant::now();
    let mut stored = 0u64;
    for day in first..=last {
        let day_started = Instant::now();
        let mut events: Vec<Event<'static>> = Vec::with_capacity(400_000);
        let chunk = 100_000u64;
        let mut done = 0u64;
        while done < args.messages_per_day {
            let n = chunk.min(args.messages_per_day - done);
            for i in 0..n {
                let m = message(&mut rng, &pepper, &id_key, day, done + i);
                statuses(&mut rng, &m, day, args.duplicates, &mut events);
                if rng.u64(0..10) == 0 {
                    inbound(&mut rng, &m, day, &id_key, &mut events);
                }
                if rng.u64(0..500) == 0 {
                    call(&mut rng, &m, day, &id_key, &mut events);
                }
                if rng.u64(0..1000) == 0 {
                    opt_out(&mut rng, &m, day, &mut events);
                }
            }
            // Arrival order is not event order.
            rng.shuffle(&mut events);
            stored += store(cfg, &writer, &events).await?;
            events.clear();
            done += n;
        }
        let version = bluetick::clock::now_ms();
        for table in [
            Table::MessageStatus,
            Table::InboundMessage,
            Table::CallEvent,
            Table::OptOut,
        ] {
            bluetick::rollup::day(ch, table, day, version).await?;
        }
        eprintln!(
            "day {} of {}: {} messages in {:.1} s ({} rows stored so far, {:.0} rows/s)",
            day - first + 1,
            last - first + 1,
            args.messages_per_day,
            day_started.elapsed().as_secs_f64(),
            stored,
            stored as f64 / started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn message(rng: &mut fastrand::Rng, pepper: &Pepper, id_key: &IdKey, day: u64, n: u64) -> Message {
    let weight: u64 = MARKETS.iter().map(|m| m.2).sum();
    let mut pick = rng.u64(0..weight);
    let market = MARKETS
        .iter()
        .position(|m| {
            let hit = pick < m.2;
            pick = pick.saturating_sub(m.2);
            hit
        })
        .unwrap_or(0);
    let (code, prefix, _) = MARKETS[market];
    let number = format!("{code}{prefix}{:07}", rng.u64(0..10_000_000));
    Message {
        tenant: rng.usize(0..TENANTS.len()),
        phone: rng.usize(0..3),
        market,
        category: CATEGORIES[rng.usize(0..CATEGORIES.len())],
        key: id_key.pseudonym(&format!("wamid.bench.{day}.{n}")),
        person: Person::protect(pepper, &number),
    }
}

fn base(m: &Message, kind: EventKind, ts: u64) -> Event<'static> {
    let (tenant, waba, phones) = TENANTS[m.tenant];
    Event {
        v: EVENT_VERSION,
        kind,
        received_ms: ts * 1000 + 250,
        ts,
        waba_id: Cow::Borrowed(waba),
        field: Cow::Borrowed("messages"),
        phone_number_id: Some(Cow::Borrowed(phones[m.phone])),
        tenant: Some(Cow::Borrowed(tenant)),
        country_code: Some(Cow::Borrowed(MARKETS[m.market].0)),
        person_masked: Some(m.person.masked),
        person_hash: Some(m.person.hash),
        ..Event::default()
    }
}

fn statuses(
    rng: &mut fastrand::Rng,
    m: &Message,
    day: u64,
    duplicates: f64,
    out: &mut Vec<Event<'static>>,
) {
    let t0 = day * 86_400 + rng.u64(0..86_400 - 600);
    let mut list = vec![("sent", t0, 0i64, "")];
    match rng.u64(0..100) {
        0..=2 => list.push(("failed", t0 + 3, 131_026, "Message undeliverable")),
        3 => list.push(("failed", t0 + 3, 131_050, "User stopped marketing")),
        4..=9 => list.push(("read", t0 + 30, 0, "")),
        10..=39 => list.push(("delivered", t0 + 5, 0, "")),
        _ => {
            list.push(("delivered", t0 + 5, 0, ""));
            // Read within a day: sometimes the next day (today's reads are in the future).
            let read = t0 + 60 + rng.u64(0..86_400);
            if read < bluetick::clock::now_secs() {
                list.push(("read", read, 0, ""));
            }
        }
    }
    for (status, ts, code, title) in list {
        let mut e = base(m, EventKind::Status, ts);
        e.message_key = Some(m.key);
        e.status = Some(Cow::Borrowed(status));
        e.pricing_model = Some(Cow::Borrowed("PMP"));
        e.pricing_category = Some(Cow::Borrowed(m.category));
        e.pricing_type = Some(Cow::Borrowed(if m.category == "service" {
            "free_customer_service"
        } else {
            "regular"
        }));
        if code != 0 {
            e.error_code = Some(code);
            e.error_title = Some(Cow::Borrowed(title));
        }
        let mut ts_buf = itoa_like(ts);
        e.id = EventId::derive(
            EventKind::Status,
            &[m.key.to_hex().as_str(), status, ts_buf.as_str()],
        );
        ts_buf.clear();
        if rng.f64() < duplicates {
            out.push(e.clone());
        }
        out.push(e);
    }
}

fn itoa_like(n: u64) -> String {
    n.to_string()
}

fn inbound(
    rng: &mut fastrand::Rng,
    m: &Message,
    day: u64,
    id_key: &IdKey,
    out: &mut Vec<Event<'static>>,
) {
    let ts = day * 86_400 + rng.u64(0..86_400 - 600);
    let mut e = base(m, EventKind::Message, ts);
    let key = id_key.pseudonym(&format!("wamid.in.{ts}.{}", rng.u64(..)));
    e.message_key = Some(key);
    e.message_type = Some(Cow::Borrowed(
        ["text", "image", "interactive", "reaction"][rng.usize(0..4)],
    ));
    if rng.u64(0..5) == 0 {
        e.ad_source_type = Some(Cow::Borrowed("ad"));
        e.ad_source_id = Some(Cow::Borrowed(
            ["120208770000000001", "120208770000000002"][rng.usize(0..2)],
        ));
    }
    e.id = EventId::derive(EventKind::Message, &[key.to_hex().as_str()]);
    out.push(e);
}

fn call(
    rng: &mut fastrand::Rng,
    m: &Message,
    day: u64,
    id_key: &IdKey,
    out: &mut Vec<Event<'static>>,
) {
    let ts = day * 86_400 + rng.u64(0..86_400 - 3_600);
    let completed = rng.u64(0..4) != 0;
    let duration = if completed { 10 + rng.u64(0..900) } else { 0 };
    let mut e = base(m, EventKind::Call, ts + duration);
    let key = id_key.pseudonym(&format!("wacid.bench.{ts}.{}", rng.u64(..)));
    e.field = Cow::Borrowed("calls");
    e.message_key = Some(key);
    e.update_event = Some(Cow::Borrowed("terminate"));
    e.status = Some(Cow::Borrowed(if completed {
        "COMPLETED"
    } else {
        "FAILED"
    }));
    e.direction = Some(Cow::Borrowed(if rng.bool() {
        "USER_INITIATED"
    } else {
        "BUSINESS_INITIATED"
    }));
    e.call_duration_s = Some(duration);
    e.id = EventId::derive(EventKind::Call, &[key.to_hex().as_str(), "terminate"]);
    out.push(e);
}

fn opt_out(rng: &mut fastrand::Rng, m: &Message, day: u64, out: &mut Vec<Event<'static>>) {
    let ts = day * 86_400 + rng.u64(0..86_400 - 600);
    let mut e = base(m, EventKind::OptOut, ts);
    e.field = Cow::Borrowed("user_preferences");
    e.preference_category = Some(Cow::Borrowed("marketing_messages"));
    e.preference = Some(Cow::Borrowed(if rng.u64(0..4) == 0 {
        "resume"
    } else {
        "stop"
    }));
    e.id = EventId::derive(
        EventKind::OptOut,
        &[m.person.hash.to_hex().as_str(), &ts.to_string()],
    );
    out.push(e);
}

/// The sink's path: records as ingest frames them, decoded, routed, inserted.
async fn store(cfg: &Config, writer: &Writer, events: &[Event<'static>]) -> anyhow::Result<u64> {
    let mut batch = Batch::new();
    let mut record = RecordWriter::with_capacity(Default::default(), 80 * 1024);
    let mut offset = 0i64;
    for e in events {
        if record.push(e) {
            batch.push(Source::Events, 0, offset, record.bytes());
            offset += 1;
            record.clear();
        }
    }
    if !record.is_empty() {
        batch.push(Source::Events, 0, offset, record.bytes());
    }
    let window = Window::new(bluetick::clock::now_secs(), &cfg.retention);
    let key = IdKey::new(b"unused: events carry keys");
    let rows = Rows::route(&batch, &key, &window, &Erased::default());
    anyhow::ensure!(
        rows.rejects.is_empty(),
        "rows refused: {:?}",
        rows.rejects.first()
    );
    let mut n = 0;
    for table in [
        Table::MessageStatus,
        Table::InboundMessage,
        Table::CallEvent,
        Table::OptOut,
    ] {
        let rejects = writer.write(table, rows.table(table)).await?;
        anyhow::ensure!(
            rejects.is_empty(),
            "ClickHouse refused rows of {}",
            table.name()
        );
        n += rows.table(table).len() as u64;
    }
    Ok(n)
}

/// Times every panel and prints the table.
async fn measure(ch: &ClickHouse, args: &Args, first: u64, last: u64) -> anyhow::Result<()> {
    let (from, to) = (first * 86_400, (last + 1) * 86_400 - 1);
    let raw_rows: u64 = ch
        .client()
        .query(&format!(
            "SELECT count() FROM message_status WHERE ts >= toDateTime({from}) AND ts <= toDateTime({to})"
        ))
        .fetch_one()
        .await?;
    let (bytes, parts_rows): (u64, u64) = ch
        .client()
        .query("SELECT sum(bytes_on_disk), sum(rows) FROM system.parts WHERE database = ? AND table = 'message_status' AND active")
        .bind(ch.database())
        .fetch_one()
        .await?;
    let mut queries = panels(from, to)?;
    queries.insert(
        0,
        (
            "baseline: the funnel asked of the raw rows".to_string(),
            format!(
                "SELECT toDate(ts) AS day, uniqExactIf(message_id, status = 'sent'), \
                 uniqExactIf(message_id, status = 'delivered'), uniqExactIf(message_id, status = 'read'), \
                 uniqExactIf(message_id, status = 'failed') FROM message_status \
                 WHERE ts >= toDateTime({from}) AND ts <= toDateTime({to}) GROUP BY day ORDER BY day"
            ),
        ),
    );
    println!(
        "\n{} days x {} messages/day: {raw_rows} status rows in range; {:.1} bytes on disk per stored status row ({} rows, {:.2} GB)\n",
        last - first + 1,
        args.messages_per_day,
        bytes as f64 / parts_rows.max(1) as f64,
        parts_rows,
        bytes as f64 / 1e9
    );
    print_columns(ch, parts_rows).await?;
    println!("| panel | p50 ms | p95 ms | rows read | % of raw status rows | faster than baseline (p50) |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut baseline_p50 = None;
    let run_tag = format!("bench{}", bluetick::clock::now_ms());
    for (i, (title, sql)) in queries.iter().enumerate() {
        let mut times = Vec::with_capacity(args.runs);
        let mut ids = BTreeSet::new();
        for r in 0..args.runs {
            let id = format!("{run_tag}-{i}-{r}");
            let client = ch
                .client()
                .clone()
                .with_setting("log_queries", "1")
                .with_setting("query_id", &id);
            let started = Instant::now();
            let mut cursor = client.query(sql).fetch_bytes("TSV")?;
            while cursor.next().await?.is_some() {}
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            ids.insert(id);
        }
        times.sort_by(f64::total_cmp);
        let p50 = times[times.len() / 2];
        let p95 = times[((times.len() as f64 * 0.95).ceil() as usize)
            .saturating_sub(1)
            .min(times.len() - 1)];
        let read = rows_read(ch, ids.iter().next().map(String::as_str).unwrap_or("")).await?;
        let base = *baseline_p50.get_or_insert(p50);
        println!(
            "| {title} | {p50:.0} | {p95:.0} | {read} | {:.3} % | {:.0}x |",
            read as f64 * 100.0 / raw_rows.max(1) as f64,
            base / p50.max(0.001)
        );
    }
    Ok(())
}

/// Bytes on disk per stored status row, column by column, largest first: where the storage goes.
async fn print_columns(ch: &ClickHouse, rows: u64) -> anyhow::Result<()> {
    let columns: Vec<(String, u64, u64)> = ch
        .client()
        .query(
            "SELECT name, data_compressed_bytes, data_uncompressed_bytes FROM system.columns \
             WHERE database = ? AND table = 'message_status' ORDER BY data_compressed_bytes DESC, name",
        )
        .bind(ch.database())
        .fetch_all()
        .await?;
    println!("| message_status column | bytes per row on disk | uncompressed |");
    println!("|---|---:|---:|");
    let per_row = |b: u64| b as f64 / rows.max(1) as f64;
    for (name, compressed, raw) in columns.iter().filter(|c| per_row(c.1) >= 0.5) {
        println!(
            "| {name} | {:.1} | {:.1} |",
            per_row(*compressed),
            per_row(*raw)
        );
    }
    println!();
    Ok(())
}

/// Rows the query read, from the server's query log.
async fn rows_read(ch: &ClickHouse, id: &str) -> anyhow::Result<u64> {
    ch.execute("SYSTEM FLUSH LOGS").await?;
    let rows: Vec<u64> = ch
        .client()
        .query("SELECT read_rows FROM system.query_log WHERE query_id = ? AND type = 2")
        .bind(id)
        .fetch_all()
        .await?;
    Ok(rows.into_iter().max().unwrap_or(0))
}

/// The analytics dashboard's panels over [from, to], variables at "All".
fn panels(from: u64, to: u64) -> anyhow::Result<Vec<(String, String)>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/dashboards/delivery-analytics.json"
    );
    let dash: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let mut out = Vec::new();
    for p in dash["panels"].as_array().context("panels")? {
        for (i, t) in p["targets"]
            .as_array()
            .context("targets")?
            .iter()
            .enumerate()
        {
            let sql = t["rawSql"].as_str().context("rawSql")?;
            let sql = sql
                .replace(
                    "$__timeFilter(ts)",
                    &format!("ts >= toDateTime({from}) AND ts <= toDateTime({to})"),
                )
                .replace("$__fromTime", &format!("toDateTime({from})"))
                .replace("$__toTime", &format!("toDateTime({to})"))
                .replace("${tenant:singlequote}", "''")
                .replace("${waba:singlequote}", "''")
                .replace("${phone:singlequote}", "''");
            let title = p["title"].as_str().unwrap_or("?");
            let title = if i > 0 {
                format!("{title} ({})", i + 1)
            } else {
                title.to_string()
            };
            out.push((title, sql));
        }
    }
    Ok(out)
}
