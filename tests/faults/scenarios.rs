//! Scenarios 1–4: a fault injected while Meta's traffic flows, Meta's retries afterwards, then
//! the count. Each is bounded: a burst of seconds, retries and waits with deadlines.

use crate::common::procs::{free_port, scratch_dir, Broker, ClickHouseServer};
use crate::common::{
    brokers, clickhouse_url, group_progress, key, now_secs, unique, wamid, Status,
};
use crate::meta::{tally, Attempt, Hook, Meta};
use crate::stage::{score, Stage};
use crate::Row;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{sleep, Instant};

pub const ALL: [&str; 5] = ["broker", "clickhouse", "kill", "retries", "bad-input"];

pub async fn run(name: &str) -> Row {
    match name {
        "broker" => broker().await,
        "clickhouse" => clickhouse().await,
        "kill" => kill().await,
        "retries" => retries().await,
        "bad-input" => crate::bad_input::run().await,
        other => panic!("no fault scenario {other:?}"),
    }
}

const STATUSES: [&str; 4] = ["sent", "delivered", "read", "failed"];

/// A customer number no other event shares.
fn number(i: usize) -> String {
    format!("9197{:08}", 10_000_000 + i)
}

/// `n` webhooks as a BSP's endpoint sees them: batches of 1–20 statuses, and every tenth an
/// inbound text and image; every event distinct.
fn mixed_hooks(tag: &str, n: usize) -> Vec<Hook> {
    let ts = now_secs();
    (0..n)
        .map(|i| {
            if i % 10 == 9 {
                let from: Vec<(String, String)> = (0..2)
                    .map(|j| {
                        let n = number(i * 2 + j);
                        let id = wamid(&n, &format!("{tag}IN{i}X{j}"));
                        (n, id)
                    })
                    .collect();
                return Hook::inbound(&from, ts);
            }
            let statuses: Vec<Status> = (0..1 + (i * 7) % 20)
                .map(|j| Status {
                    message_id: wamid(&number(i * 31 + j), &format!("{tag}S{i}X{j}")),
                    status: STATUSES[(i + j) % 4],
                    ts: ts - j as u64,
                    number: number(i * 31 + j),
                })
                .collect();
            Hook::statuses(&statuses)
        })
        .collect()
}

/// Sends `hooks` once each at `rate` while `fault` runs beside it, then retries what was
/// not 200'd, as Meta does. Returns every attempt and what `fault` returned.
async fn traffic_with<F, T>(
    stage: &Stage,
    hooks: &Arc<Vec<Hook>>,
    rate: f64,
    fault: F,
) -> (Vec<Attempt>, T)
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let meta = Arc::new(Meta::new(stage.ingest_addr));
    let order: Vec<usize> = (0..hooks.len()).collect();
    let fault = tokio::spawn(fault);
    let mut attempts = meta.burst(hooks, &order, rate, 64).await;
    let fault = fault.await.expect("fault task");
    let retries = meta
        .redeliver(hooks, &attempts, Duration::from_secs(90))
        .await;
    attempts.extend(retries);
    (attempts, fault)
}

/// Runs a blocking start (of a process) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

/// 1. The broker is killed mid-burst and restarted on the same log: ingest answers 503 while
///    it is down, never 200 without an ack; after the restart every 200'd event arrives.
async fn broker() -> Row {
    let mut row = Row {
        scenario: "1 broker killed mid-burst, restarted 4 s later",
        ..Row::default()
    };
    let dir = scratch_dir("bluetick-faults-tansu");
    let port = free_port();
    let broker = Broker::start(&dir, port);
    let stage = Stage::new("broker", &broker.addr, &clickhouse_url()).await;
    let (ingest, sink) = (stage.ingest(), stage.sink());
    let hooks = Arc::new(mixed_hooks(&unique("b"), 480));

    let fault_dir = dir.clone();
    let fault = async move {
        sleep(Duration::from_secs(3)).await;
        let down = Instant::now();
        broker.kill();
        sleep(Duration::from_secs(4)).await;
        let up = Instant::now();
        let broker = blocking(move || Broker::start(&fault_dir, port)).await;
        (broker, down, up)
    };
    let (attempts, (broker, down, up)) = traffic_with(&stage, &hooks, 40.0, fault).await;

    // Sent after the broker was gone and answered before it was back: no ack was possible.
    let blind = |a: &&Attempt| a.sent > down + Duration::from_millis(200) && a.answered < up;
    let while_down: Vec<&Attempt> = attempts.iter().filter(blind).collect();
    let ok_down = while_down.iter().filter(|a| a.status == Some(200)).count();
    let refused_down = while_down.iter().filter(|a| a.status == Some(503)).count();
    row.check(
        ok_down == 0,
        format!("{ok_down} answered 200 while the broker was down"),
    );
    row.check(refused_down > 0, "no 503 while the broker was down");

    let t = tally(&hooks, &attempts);
    let held = stage.settle(&t.acked, Duration::from_secs(90)).await;
    score(&mut row, &hooks, &t, &held);
    row.note = format!("while down: {refused_down} × 503, {ok_down} × 200");
    ingest.stop();
    sink.stop();
    broker.kill();
    stage.finish(&row).await;
    if row.failures.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    row
}

/// 2. ClickHouse is killed mid-burst and restarted: the sink commits nothing while it is
///    down, retries, and resumes; ingest is unaffected.
async fn clickhouse() -> Row {
    let mut row = Row {
        scenario: "2 ClickHouse killed mid-burst, restarted 5 s later",
        ..Row::default()
    };
    let dir = scratch_dir("bluetick-faults-clickhouse");
    let (http, tcp) = (free_port(), free_port());
    let server = ClickHouseServer::start(&dir, http, tcp);
    let stage = Stage::new("clickhouse", &brokers(), &server.url).await;
    let (ingest, sink) = (stage.ingest(), stage.sink());
    let hooks = Arc::new(mixed_hooks(&unique("c"), 480));

    let (cfg, fault_dir) = (stage.cfg.clone(), dir.clone());
    let fault = async move {
        // Kill it mid-stream: once the sink has stored and committed a first batch.
        let topic = &cfg.kafka.events_topic;
        let waited = Instant::now();
        while group_progress(&cfg.kafka.brokers, &cfg.sink.group_id, topic)
            .await
            .1
            == 0
            && waited.elapsed() < Duration::from_secs(20)
        {
            sleep(Duration::from_millis(200)).await;
        }
        server.kill();
        sleep(Duration::from_secs(1)).await;
        let (_, committed_early) =
            group_progress(&cfg.kafka.brokers, &cfg.sink.group_id, topic).await;
        sleep(Duration::from_secs(4)).await;
        let (high, committed_late) =
            group_progress(&cfg.kafka.brokers, &cfg.sink.group_id, topic).await;
        let server = blocking(move || ClickHouseServer::start(&fault_dir, http, tcp)).await;
        (server, committed_early, committed_late, high)
    };
    let (attempts, (server, early, late, high)) = traffic_with(&stage, &hooks, 40.0, fault).await;
    row.check(
        early == late,
        format!("offsets moved while ClickHouse was down ({early} → {late})"),
    );
    row.check(
        late > 0,
        "ClickHouse was killed before the sink stored anything",
    );
    row.check(late < high, "nothing was pending while ClickHouse was down");

    let t = tally(&hooks, &attempts);
    row.check(
        t.ok == hooks.len(),
        "ingest refused requests during a ClickHouse outage",
    );
    let held = stage.settle(&t.acked, Duration::from_secs(120)).await;
    score(&mut row, &hooks, &t, &held);
    row.note = format!("offsets held at {late} of {high} while down");
    ingest.stop();
    sink.stop();
    stage.finish(&row).await;
    drop(server);
    if row.failures.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    row
}

/// 3. `kill -9` of ingest, then of the sink, mid-burst; each restarted a second later.
async fn kill() -> Row {
    let mut row = Row {
        scenario: "3 kill -9 of ingest, then of sink, mid-burst; restarted",
        ..Row::default()
    };
    let stage = Arc::new(Stage::new("kill", &brokers(), &clickhouse_url()).await);
    let (ingest, sink) = (stage.ingest(), stage.sink());
    let hooks = Arc::new(mixed_hooks(&unique("k"), 600));

    let s = stage.clone();
    let fault = async move {
        sleep(Duration::from_secs(3)).await;
        ingest.kill9();
        sleep(Duration::from_secs(1)).await;
        let s2 = s.clone();
        let ingest = blocking(move || s2.ingest()).await;
        sleep(Duration::from_secs(4)).await;
        sink.kill9();
        sleep(Duration::from_secs(1)).await;
        let sink = blocking(move || s.sink()).await;
        (ingest, sink)
    };
    let (attempts, (ingest, sink)) = traffic_with(&stage, &hooks, 40.0, fault).await;
    let t = tally(&hooks, &attempts);
    let held = stage.settle(&t.acked, Duration::from_secs(120)).await;
    score(&mut row, &hooks, &t, &held);
    row.note = "ingest and sink each down 1 s".to_string();
    ingest.stop();
    sink.stop();
    if let Ok(stage) = Arc::try_unwrap(stage) {
        stage.finish(&row).await;
    }
    row
}

/// A tiny deterministic generator, so a failing order can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// Lifecycle of message `i` and the status it must end in.
fn lifecycle(i: usize) -> (&'static [&'static str], &'static str) {
    match i % 4 {
        0 | 3 => (&["sent", "delivered", "read"], "read"),
        1 => (&["sent", "failed"], "failed"),
        _ => (&["sent", "delivered"], "delivered"),
    }
}

/// 4. Meta's retries: every webhook delivered 2–5 times, all of them in random order (a
///    `read` may come before its `sent`). Exact counts, and the latest status right.
async fn retries() -> Row {
    let mut row = Row {
        scenario: "4 every webhook 2–5 times, statuses out of order",
        ..Row::default()
    };
    let stage = Stage::new("retries", &brokers(), &clickhouse_url()).await;
    let (ingest, sink) = (stage.ingest(), stage.sink());
    let tag = unique("r");
    let ts = now_secs() - 600;
    let mut hooks = Vec::new();
    let mut latest = HashMap::new();
    for i in 0..200 {
        let id = wamid(&number(i), &format!("{tag}L{i:04}"));
        let (steps, last) = lifecycle(i);
        for (k, status) in steps.iter().enumerate() {
            hooks.push(Hook::statuses(&[Status {
                message_id: id.clone(),
                status,
                ts: ts + 5 * k as u64,
                number: number(i),
            }]));
        }
        latest.insert(key(&id), last.to_string());
    }
    let seed = 0x5eed_0004_u64;
    let mut rng = Rng(seed);
    let mut order: Vec<usize> = (0..hooks.len())
        .flat_map(|h| std::iter::repeat(h).take(2 + rng.below(4)))
        .collect();
    rng.shuffle(&mut order);

    let hooks = Arc::new(hooks);
    let meta = Arc::new(Meta::new(stage.ingest_addr));
    let mut attempts = meta.burst(&hooks, &order, 150.0, 64).await;
    attempts.extend(
        meta.redeliver(&hooks, &attempts, Duration::from_secs(60))
            .await,
    );
    let t = tally(&hooks, &attempts);
    let held = stage.settle(&t.acked, Duration::from_secs(90)).await;
    score(&mut row, &hooks, &t, &held);

    let keys: Vec<String> = latest.keys().map(|k| format!("'{k}'")).collect();
    let sql = format!(
        "SELECT message_id, status FROM message_latest_status \
         WHERE message_id IN ({}) FORMAT TSV",
        keys.join(",")
    );
    let shown: HashMap<String, String> = crate::common::ch_text(&stage.cfg, &sql)
        .await
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(id, s)| (id.to_string(), s.to_string()))
        .collect();
    let wrong = latest
        .iter()
        .filter(|(id, s)| shown.get(*id) != Some(s))
        .count();
    row.check(
        shown.len() == latest.len(),
        format!("{} of {} messages in the view", shown.len(), latest.len()),
    );
    row.check(
        wrong == 0,
        format!("{wrong} messages show the wrong latest status"),
    );
    row.note = format!(
        "{} webhooks × 2–5 (seed {seed:#x}); latest status right for {}/{} messages",
        hooks.len(),
        latest.len() - wrong,
        latest.len()
    );
    ingest.stop();
    sink.stop();
    stage.finish(&row).await;
    row
}
