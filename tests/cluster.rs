//! Scale-out on the engines users run: ingest → Kafka (the real broker) → two sink processes
//! in one consumer group → a ClickHouse 18.16 cluster of two shards (the first with two
//! replicas) under ZooKeeper, schema made by `bluetick migrate` with `clickhouse.cluster`.
//! A replica is killed mid-stream and a sink is killed mid-stream; totals through the
//! Distributed tables stay exact, each message's statuses sit on one shard, the replica
//! catches up, and retention, erase (checked on every replica) and export work on the cluster.

mod common;

use bluetick::privacy::{Pepper, PersonHash};
use common::cluster::{Cluster, CLUSTER, SHARD_OF};
use common::procs::{free_port, scratch_dir, Bluetick};
use common::*;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(120);
const MESSAGES: usize = 300;

fn number(i: usize) -> String {
    format!("9198{:08}", 10_000_000 + i)
}

fn hash(number: &str) -> PersonHash {
    Pepper::new(PEPPER.as_bytes()).hash_phone(number)
}

/// Webhooks of `range`'s messages: sent, delivered and read, ten messages to a body.
fn bodies(range: std::ops::Range<usize>, ts: u64) -> Vec<Vec<u8>> {
    let statuses: Vec<Status> = range
        .flat_map(|m| {
            ["sent", "delivered", "read"]
                .into_iter()
                .enumerate()
                .map(move |(k, status)| Status {
                    message_id: wamid(&number(m % 40), &format!("C{m}")),
                    status,
                    ts: ts + m as u64 + k as u64,
                    number: number(m % 40),
                })
        })
        .collect();
    statuses.chunks(30).map(status_body).collect()
}

/// Posts every body; Meta retries the first of each batch (a duplicate delivery). Spaced
/// past the producer's sticky-partition window, so the records spread over the partitions
/// (ingest's records carry no key).
async fn post_all(addr: std::net::SocketAddr, bodies: &[Vec<u8>]) {
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(post_signed(addr, body).await.status, 200);
        if i == 0 {
            assert_eq!(post_signed(addr, body).await.status, 200);
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// The events-topic partitions the sink at `addr` owns, from its lag gauges.
async fn owned(addr: &str, topic: &str) -> BTreeSet<String> {
    let text = get(addr.parse().expect("addr"), "/metrics").await.body;
    let prefix = format!("bluetick_sink_consumer_lag_messages{{topic=\"{topic}\",partition=\"");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|l| l.split('"').next())
        .map(str::to_string)
        .collect()
}

/// A number from server `i` (its own tables, not through Distributed).
async fn on_server(cluster: &Cluster, i: usize, cfg: &bluetick::config::Config, sql: &str) -> u64 {
    let mut c = cfg.clone();
    c.clickhouse.url = cluster.url(i);
    ch_text(&c, sql).await.trim().parse().expect("a number")
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The whole scenario's bound: a passing run takes about a minute; a step that never ends
/// fails the test here, naming the step, instead of holding CI until its own limit.
const SCENARIO: Duration = Duration::from_secs(12 * 60);

/// The step under way, printed as it starts (with the seconds since the scenario began), so
/// that a run stopped by [`SCENARIO`] says where it stood.
static STEP: std::sync::Mutex<&str> = std::sync::Mutex::new("starting");

fn step(started: Instant, name: &'static str) {
    eprintln!("[cluster {:6.1}s] {name}", started.elapsed().as_secs_f64());
    if let Ok(mut current) = STEP.lock() {
        *current = name;
    }
}

/// The last lines of every log under `dir` (the servers', ZooKeeper's, the sinks').
fn log_tails(dir: &std::path::Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for path in entries.flatten().map(|e| e.path()) {
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                out.push_str(&format!("--- {}\n", path.display()));
                for line in &lines[lines.len().saturating_sub(12)..] {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sinks_fill_a_replicated_sharded_cluster_exactly_through_failures() {
    let dir = scratch_dir("cluster");
    // Dropping the scenario's future at the bound drops its servers and sinks (each ends its
    // own process); the logs stay in `dir`.
    let finished = tokio::time::timeout(SCENARIO, scenario(&dir)).await;
    if finished.is_err() {
        let at = STEP.lock().map(|s| *s).unwrap_or("?");
        panic!(
            "the scenario did not finish within {SCENARIO:?}; it was at: {at}\n{}",
            log_tails(&dir)
        );
    }
    // A failed run keeps the servers' logs in `dir`; a passed one leaves nothing behind.
    let _ = std::fs::remove_dir_all(&dir);
}

async fn scenario(dir: &std::path::Path) {
    let started = Instant::now();
    step(started, "ZooKeeper and three ClickHouse servers start");
    let mut cluster = Cluster::start(dir);
    let mut cfg = config();
    sink_config(&mut cfg);
    cfg.clickhouse.url = cluster.url(0);
    cfg.clickhouse.cluster = CLUSTER.to_string();
    cfg.sink.rollup_interval_ms = 1_000;
    // A killed sink's partitions move after this long.
    cfg.sink.session_timeout_ms = 10_000;
    step(
        started,
        "migrate on the cluster, ingest and two sinks start",
    );
    migrate(&cfg).await;
    let ingest = Server::start(&cfg).await;
    let sink_cfg = |name: &str| {
        let mut c = cfg.clone();
        c.sink.instance_id = name.to_string();
        c.sink.listen = format!("127.0.0.1:{}", free_port());
        c
    };
    let (a_cfg, b_cfg) = (sink_cfg("sink-a"), sink_cfg("sink-b"));
    let a = Bluetick::start(&a_cfg, "sink", dir, &a_cfg.sink.listen);
    let b = Bluetick::start(&b_cfg, "sink", dir, &b_cfg.sink.listen);
    let ts = now_secs() - 3_600;
    let third = MESSAGES / 3;

    // A third with every server up, a third with a replica of shard 1 killed, a third after
    // sink A was killed with whatever it had in hand.
    step(started, "the first third, every server up");
    post_all(ingest.addr, &bodies(0..third, ts)).await;
    step(started, "the second third, a replica killed");
    cluster.kill(1);
    post_all(ingest.addr, &bodies(third..2 * third, ts)).await;
    // Both sinks own partitions of the events topic when A is killed.
    let topic = cfg.kafka.events_topic.clone();
    wait_until("both sinks own partitions", || async {
        let (mine, theirs) = (
            owned(&a_cfg.sink.listen, &topic).await,
            owned(&b_cfg.sink.listen, &topic).await,
        );
        !mine.is_empty() && !theirs.is_empty() && mine.is_disjoint(&theirs)
    })
    .await;
    step(started, "the last third, sink A killed");
    a.kill9();
    post_all(ingest.addr, &bodies(2 * third..MESSAGES, ts)).await;
    // The orchestrator starts the lost sink again under its own id (a StatefulSet pod keeps
    // its name): static membership gives it its partitions back without a rebalance, and it
    // resumes from their last committed offsets.
    let a = Bluetick::start(&a_cfg, "sink", dir, &a_cfg.sink.listen);

    step(started, "every event stored through Distributed");
    let statuses = (MESSAGES * 3) as u64;
    let events = "SELECT uniqExact(event_id) FROM message_status";
    let stored = wait_for_scalar(&cfg, events, statuses, WAIT).await;
    if stored != statuses {
        let metrics = get(b_cfg.sink.listen.parse().expect("addr"), "/metrics")
            .await
            .body;
        let lag: Vec<&str> = metrics.lines().filter(|l| l.contains("lag")).collect();
        let mut locals = Vec::new();
        for server in [0, 2] {
            let sql = "SELECT uniqExact(event_id) FROM message_status_local";
            locals.push(on_server(&cluster, server, &cfg, sql).await);
        }
        panic!("{stored} of {statuses} events stored (shards: {locals:?}); sink B: {lag:#?}");
    }
    let once = "SELECT count() FROM message_status FINAL";
    assert_eq!(scalar(&cfg, once).await, statuses, "each event once");
    step(
        started,
        "the killed replica restarts; shards hold disjoint messages",
    );
    cluster.restart(1);

    // Each message's statuses on one shard: the shards' message sets do not meet.
    let mut per_shard: Vec<BTreeSet<String>> = Vec::new();
    for server in [0, 2] {
        let mut c = cfg.clone();
        c.clickhouse.url = cluster.url(server);
        let ids = ch_text(
            &c,
            "SELECT DISTINCT message_id FROM message_status_local FORMAT TSV",
        )
        .await;
        per_shard.push(ids.lines().map(str::to_string).collect());
    }
    assert!(
        !per_shard[0].is_empty() && !per_shard[1].is_empty(),
        "both shards hold rows"
    );
    assert!(per_shard[0].is_disjoint(&per_shard[1]));
    assert_eq!(per_shard[0].len() + per_shard[1].len(), MESSAGES);

    step(started, "the restarted replica catches up");
    let local = "SELECT count() FROM message_status_local FINAL";
    let shard1 = on_server(&cluster, 0, &cfg, local).await;
    wait_until("the restarted replica catches up", || async {
        on_server(&cluster, 1, &cfg, local).await == shard1
    })
    .await;
    assert_eq!(SHARD_OF[0], SHARD_OF[1]);

    step(started, "the daily aggregates reach every server");
    // The daily aggregates, replicated to every server, count what the raw rows hold.
    let funnel = "SELECT sum(sent) FROM status_daily FINAL";
    for server in 0..3 {
        wait_until("the rollup reaches every server", || async {
            on_server(&cluster, server, &cfg, funnel).await == MESSAGES as u64
        })
        .await;
    }

    step(started, "export through Distributed");
    // Export reads through Distributed: one person's rows from both shards.
    let person = number(7);
    let mut out = Vec::new();
    bluetick::export::run(
        &cfg,
        &[hash(&person)],
        bluetick::export::Format::Jsonl,
        &mut out,
        &mut Vec::new(),
    )
    .await
    .expect("export on the cluster");
    let theirs = (0..MESSAGES).filter(|m| m % 40 == 7).count() * 3;
    assert_eq!(
        String::from_utf8(out).expect("utf-8").lines().count(),
        theirs
    );

    step(started, "erase on every shard, checked on every replica");
    // Erase runs on every shard and is verified on every replica.
    let waits = bluetick::erase::Waits {
        mutation: WAIT,
        settle: Duration::from_millis(100),
    };
    bluetick::erase::run(&cfg, &[hash(&person)], waits, &mut Vec::new())
        .await
        .expect("erase on the cluster");
    let left = format!(
        "SELECT count() FROM message_status_local WHERE person_hash = '{}'",
        hash(&person)
    );
    for server in 0..3 {
        assert_eq!(
            on_server(&cluster, server, &cfg, &left).await,
            0,
            "server {server}"
        );
    }
    assert_eq!(scalar(&cfg, once).await, statuses - theirs as u64);

    step(started, "retention drops an old day on every shard");
    // Retention drops an old day on every shard.
    let old = now_secs() - 200 * 86_400;
    ch_text(
        &cfg,
        &format!(
            "INSERT INTO message_status (event_id, ts, message_id, status) VALUES \
             ('old1', {old}, 'o1', 'sent'), ('old2', {old}, 'o2', 'sent'), \
             ('old3', {old}, 'o3', 'sent'), ('old4', {old}, 'o4', 'sent')"
        ),
    )
    .await;
    let old_rows = format!("SELECT count() FROM message_status_local WHERE ts = {old}");
    // (This INSERT is not the sink's: Distributed forwards it to the shards in the background.)
    wait_until("the old rows reach their shards", || async {
        on_server(&cluster, 0, &cfg, &old_rows).await
            + on_server(&cluster, 2, &cfg, &old_rows).await
            == 4
    })
    .await;
    bluetick::retention::run(&cfg, false, &mut Vec::new())
        .await
        .expect("retention on the cluster");
    wait_until("the old day is gone from every server", || async {
        let mut total = 0;
        for server in 0..3 {
            total += on_server(&cluster, server, &cfg, &old_rows).await;
        }
        total == 0
    })
    .await;

    step(started, "sinks, ingest and servers stop");
    a.stop();
    b.stop();
    ingest.stop().await;
    drop(cluster);
    step(started, "done");
}

/// CPU seconds (user + system) process `pid` used so far, from /proc.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process is alive");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 =
        fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    ticks / 100.0
}

/// The figures of deploy/SCALING.md (a benchmark that prints, not a test that times):
/// one backlog of statuses drained into the cluster by 1 and by 2 sinks, on one shard (two
/// replicas) and on two shards, each from a fresh consumer group into a fresh database.
/// `cargo test --release --test cluster -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints the scale-out figures; run by hand"]
async fn scale_out_figures() {
    const EVENTS: usize = 300_000;
    let dir = scratch_dir("scale-out");
    let cluster = Cluster::start(&dir);
    let mut base = config();
    sink_config(&mut base);
    base.kafka.partitions = 6;
    base.clickhouse.url = cluster.url(0);
    base.sink.rollup_interval_ms = 0;
    base.sink.batch_max_age_ms = 1_000;
    // The backlog: statuses of 100 messages a body, through ingest.
    let mut fill = base.clone();
    fill.clickhouse.cluster = CLUSTER.to_string();
    migrate(&fill).await;
    let ingest = Server::start(&fill).await;
    let ts = now_secs() - 3_600;
    for chunk in 0..EVENTS / 100 {
        let statuses: Vec<Status> = (0..100)
            .map(|i| {
                let m = chunk * 100 + i;
                Status {
                    message_id: wamid(&number(m % 5_000), &format!("S{m}")),
                    status: "sent",
                    ts: ts + (m % 3_000) as u64,
                    number: number(m % 5_000),
                }
            })
            .collect();
        assert_eq!(
            post_signed(ingest.addr, &status_body(&statuses))
                .await
                .status,
            200
        );
    }
    ingest.stop().await;
    println!(
        "\n{EVENTS} statuses in the events topic ({} partitions)\n",
        base.kafka.partitions
    );
    println!(
        "| ClickHouse | sinks | rows | wall s | rows/s | sink CPU s | rows per sink CPU-s | \
         ClickHouse CPU s (3 servers) | broker CPU s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    // The shared broker of scripts/services.sh, when it is the one in use.
    let broker_pid: Option<u32> =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.run/tansu.pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok());
    let broker_cpu = || broker_pid.map_or(f64::NAN, cpu_secs);
    for (layout, name) in [
        ("1 shard x 2 replicas", common::cluster::ONE_SHARD),
        ("2 shards (2 + 1 replicas)", CLUSTER),
    ] {
        for sinks in [1, 2] {
            let mut cfg = base.clone();
            cfg.clickhouse.cluster = name.to_string();
            cfg.clickhouse.database = unique("bt").replace('-', "_");
            cfg.sink.group_id = unique("drain");
            bluetick::migrate::run(&cfg, &mut Vec::new())
                .await
                .expect("migrate");
            let servers_cpu = || cluster.pids().iter().map(|p| cpu_secs(*p)).sum::<f64>();
            let servers_before = servers_cpu();
            let broker_before = broker_cpu();
            let started = Instant::now();
            let procs: Vec<Bluetick> = (0..sinks)
                .map(|i| {
                    let mut c = cfg.clone();
                    c.sink.instance_id = format!("drain-{i}");
                    c.sink.listen = format!("127.0.0.1:{}", free_port());
                    Bluetick::start(&c, "sink", &dir, &c.sink.listen)
                })
                .collect();
            let sql = "SELECT count() FROM message_status";
            let rows = wait_for_scalar(&cfg, sql, EVENTS as u64, Duration::from_secs(600)).await;
            let wall = started.elapsed().as_secs_f64();
            let cpu: f64 = procs.iter().map(|p| cpu_secs(p.pid())).sum();
            let servers = servers_cpu() - servers_before;
            let broker = broker_cpu() - broker_before;
            for p in procs {
                p.stop();
            }
            println!(
                "| {layout} | {sinks} | {rows} | {wall:.1} | {:.0} | {cpu:.2} | {:.0} | {servers:.2} \
                 | {broker:.2} |",
                rows as f64 / wall,
                rows as f64 / cpu.max(1e-9)
            );
        }
    }
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
