//! What an operator relies on, against the real broker and ClickHouse: liveness that turns
//! 503 when the sink stops making progress and recovers with it, readiness that says why, and
//! consumer lag that stays right when partitions move between two sinks of one group.

mod common;

use common::procs::{free_port, scratch_dir, Bluetick};
use common::relay::Relay;
use common::*;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// A relay in front of the test ClickHouse, and `cfg` pointed at it.
async fn behind_relay(cfg: &mut bluetick::config::Config) -> Relay {
    let target: SocketAddr = cfg
        .clickhouse
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("ClickHouse URL is http://host:port");
    let relay = Relay::start(target).await;
    cfg.clickhouse.url = format!("http://{}", relay.addr);
    relay
}

/// Polls `path` until `done` holds for its reply, or panics with the last one after `within`.
async fn wait_reply(
    addr: SocketAddr,
    path: &str,
    within: Duration,
    done: impl Fn(&Reply) -> bool,
) -> Reply {
    let deadline = Instant::now() + within;
    loop {
        let reply = get(addr, path).await;
        if done(&reply) {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "{path} still answers {} {:?}",
            reply.status,
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn burst(tag: &str, n: u64) -> Vec<u8> {
    let base = now_secs() - 300;
    let list: Vec<Status> = (0..n)
        .map(|i| {
            let number = format!("9198{:08}", i);
            Status {
                message_id: wamid(&number, &format!("{tag}{i}")),
                status: "delivered",
                ts: base + i,
                number,
            }
        })
        .collect();
    status_body(&list)
}

#[tokio::test]
async fn a_sink_that_cannot_store_turns_unhealthy_then_recovers_with_nothing_lost() {
    let mut cfg = config();
    sink_config(&mut cfg);
    cfg.sink.stall_after_ms = 1_500;
    migrate(&cfg).await;
    let direct = cfg.clone();
    let relay = behind_relay(&mut cfg).await;
    let ingest = Server::start(&cfg).await;
    let sink = Sink::start(&cfg).await;
    let healthy = |r: &Reply| r.status == 200;
    wait_reply(sink.metrics, "/healthz", WAIT, healthy).await;
    wait_reply(sink.metrics, "/readyz", WAIT, healthy).await;

    relay.cut();
    assert_eq!(
        post_signed(ingest.addr, &burst("stall", 20)).await.status,
        200
    );
    // Not ready at once (a step is failing), not live once the batch outlasts its deadline.
    let ready = wait_reply(sink.metrics, "/readyz", WAIT, |r| {
        r.status == 503 && r.body.contains("retrying")
    })
    .await;
    assert!(ready.body.contains("clickhouse"), "{}", ready.body);
    let live = wait_reply(sink.metrics, "/healthz", WAIT, |r| r.status == 503).await;
    assert!(live.body.contains("stalled: sink batch"), "{}", live.body);
    let sql = "SELECT uniqExact(event_id) FROM message_status";
    assert_eq!(scalar(&direct, sql).await, 0);

    relay.restore();
    wait_reply(sink.metrics, "/healthz", WAIT, healthy).await;
    wait_reply(sink.metrics, "/readyz", WAIT, healthy).await;
    assert_eq!(wait_for_scalar(&direct, sql, 20, WAIT).await, 20);
    sink.stop().await;
    ingest.stop().await;
    drop_database(&direct).await;
}

/// The value of `name{labels…}` series in a Prometheus text, summed over the series whose
/// labels contain every `filter`.
fn metric_sum(text: &str, name: &str, filter: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| filter.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// (lag of `topic`, partitions assigned over all topics) per sink, from each sink's /metrics.
async fn lags(sinks: &[SocketAddr], topic: &str) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for addr in sinks {
        let text = get(*addr, "/metrics").await.body;
        let filter = format!("topic=\"{topic}\"");
        out.push((
            metric_sum(&text, "bluetick_sink_consumer_lag_messages", &[&filter]),
            metric_sum(&text, "bluetick_sink_assigned_partitions", &[]),
        ));
    }
    out
}

/// Waits until the lag `sink` reports for `topic` sums to `total`; panics after [`WAIT`] with
/// what it read.
async fn wait_lag(sink: SocketAddr, topic: &str, total: f64, when: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = lags(&[sink], topic).await;
        if now[0].0 == total {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "lag (messages, partitions) {when}: {now:?}, not {total}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One event record as ingest writes it: a webhook's record, read back from the topic.
async fn seed_record(cfg: &bluetick::config::Config) -> Vec<u8> {
    let ingest = Server::start(cfg).await;
    assert_eq!(
        post_signed(ingest.addr, &burst("seed", 1)).await.status,
        200
    );
    let topic = &cfg.kafka.events_topic;
    let seed = common::kafka::consume(&cfg.kafka.brokers, topic, 1, WAIT).await;
    ingest.stop().await;
    seed[0].payload.clone()
}

/// Writes `each` copies of `record` to every partition in `partitions`, and waits for the acks.
fn copies(cfg: &bluetick::config::Config, record: &[u8], partitions: i32, each: usize) {
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &cfg.kafka.brokers)
        .create()
        .expect("producer");
    for p in 0..partitions {
        for _ in 0..each {
            producer
                .send(
                    BaseRecord::<[u8], [u8]>::to(&cfg.kafka.events_topic)
                        .partition(p)
                        .payload(record),
                )
                .expect("enqueue");
        }
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_counted_once_when_partitions_move_between_two_sinks() {
    let mut cfg = config();
    sink_config(&mut cfg);
    cfg.kafka.partitions = 4;
    migrate(&cfg).await;
    let direct = cfg.clone();
    let relay = behind_relay(&mut cfg).await;
    let dir = scratch_dir("lag");
    let topic = cfg.kafka.events_topic.clone();
    let line = seed_record(&cfg).await;

    // One record per partition lands, so each partition has a committed offset to lag from.
    let mut a_cfg = cfg.clone();
    a_cfg.sink.listen = format!("127.0.0.1:{}", free_port());
    let a = Bluetick::start(&a_cfg, "sink", &dir, &a_cfg.sink.listen);
    let a_addr: SocketAddr = a_cfg.sink.listen.parse().expect("addr");
    copies(&cfg, &line, 4, 1);
    let sql = "SELECT count() FROM message_status";
    wait_for_scalar(&direct, sql, 1, WAIT).await;
    let brokers = cfg.kafka.brokers.clone();
    wait_committed(&brokers, &cfg.sink.group_id, &topic, WAIT).await;

    // ClickHouse goes away; 10 records per partition wait.
    relay.cut();
    copies(&cfg, &line, 4, 10);
    wait_lag(a_addr, &topic, 40.0, "while ClickHouse is away").await;

    // A second sink joins the group: partitions move, the total lag does not.
    let mut b_cfg = cfg.clone();
    b_cfg.sink.listen = format!("127.0.0.1:{}", free_port());
    let b = Bluetick::start(&b_cfg, "sink", &dir, &b_cfg.sink.listen);
    let b_addr: SocketAddr = b_cfg.sink.listen.parse().expect("addr");
    let deadline = Instant::now() + WAIT;
    let split = loop {
        let now = lags(&[a_addr, b_addr], &topic).await;
        // Both own partitions of the topic (10 waiting in each) and report lag for their
        // own only: the sum stays 40, where a stale gauge would count moved ones twice.
        if now[0].0 > 0.0 && now[1].0 > 0.0 && now[0].0 + now[1].0 == 40.0 {
            break now;
        }
        assert!(Instant::now() < deadline, "after the rebalance: {now:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("lag (messages, partitions) per sink after the rebalance: {split:?}");

    relay.restore();
    let deadline = Instant::now() + WAIT;
    loop {
        let now = lags(&[a_addr, b_addr], &topic).await;
        if now[0].0 + now[1].0 == 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "after the outage: {now:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Every copy is one event: stored once as the dashboards count it.
    assert_eq!(
        scalar(&direct, "SELECT uniqExact(event_id) FROM message_status").await,
        1
    );
    b.stop();
    a.stop();
    drop_database(&direct).await;
}

/// A sink of a new group that cannot store from its start commits nothing, so librdkafka
/// knows no lag for its partitions (it counts from a committed offset): the gauge must still
/// show the whole backlog, measured from the broker, rather than 0 all through the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_group_that_cannot_store_shows_its_whole_backlog_as_lag() {
    let mut cfg = config();
    sink_config(&mut cfg);
    cfg.kafka.partitions = 2;
    migrate(&cfg).await;
    let direct = cfg.clone();
    let topic = cfg.kafka.events_topic.clone();
    // Seven more copies of a record on each partition: 7 + 7 + the seed's one.
    let line = seed_record(&cfg).await;
    copies(&cfg, &line, 2, 7);

    let relay = behind_relay(&mut cfg).await;
    relay.cut();
    let dir = scratch_dir("lag-new-group");
    cfg.sink.listen = format!("127.0.0.1:{}", free_port());
    let sink = Bluetick::start(&cfg, "sink", &dir, &cfg.sink.listen);
    let addr: SocketAddr = cfg.sink.listen.parse().expect("addr");
    wait_lag(addr, &topic, 15.0, "while ClickHouse is away").await;

    // Once stored, nothing lags.
    relay.restore();
    wait_lag(addr, &topic, 0.0, "once ClickHouse is back").await;
    sink.stop();
    drop_database(&direct).await;
}

/// Runs `bluetick <args>` once with `cfg` as its config file, off the runtime (the sink
/// under test runs on it meanwhile); (success, stdout + stderr).
async fn run_once(
    cfg: &bluetick::config::Config,
    dir: &std::path::Path,
    args: &[&str],
) -> (bool, String) {
    let path = dir.join("once.toml");
    std::fs::write(&path, toml::to_string(cfg).expect("TOML")).expect("config");
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_bluetick"))
            .arg("--config")
            .arg(&path)
            .args(&args)
            .env("BLUETICK_LOG", "warn")
            .output()
            .expect("run bluetick")
    })
    .await
    .expect("blocking thread");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test]
async fn job_runs_are_pushed_and_a_failed_run_keeps_the_last_success() {
    let mut cfg = config();
    sink_config(&mut cfg);
    migrate(&cfg).await;
    let old = now_secs() - 200 * 86_400;
    ch_text(
        &cfg,
        &format!("INSERT INTO message_status (event_id, ts, message_id, status) VALUES ('old', {old}, 'm', 'sent')"),
    )
    .await;
    let dir = scratch_dir("push");
    let gateway = common::procs::Pushgateway::start(&dir);
    cfg.ops.pushgateway_url = gateway.url.clone();
    let addr: SocketAddr = gateway
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let pushed = || async move { get(addr, "/metrics").await.body };

    let (ok, log) = run_once(&cfg, &dir, &["retention"]).await;
    assert!(ok, "{log}");
    let text = pushed().await;
    let value = |text: &str, name: &str| metric_sum(text, name, &["job=\"bluetick_retention\""]);
    assert_eq!(
        value(&text, "bluetick_retention_partitions_dropped"),
        1.0,
        "{text}"
    );
    assert_eq!(value(&text, "bluetick_retention_last_run_failed"), 0.0);
    let success = value(&text, "bluetick_retention_last_success_timestamp_seconds");
    assert!((success - now_secs() as f64).abs() < 120.0, "{success}");

    // ClickHouse unreachable: the run fails, says so, and the last success stays.
    let mut broken = cfg.clone();
    broken.clickhouse.url = "http://127.0.0.1:1".into();
    let (ok, log) = run_once(&broken, &dir, &["retention"]).await;
    assert!(!ok && log.contains("127.0.0.1:1"), "{log}");
    let text = pushed().await;
    assert_eq!(
        value(&text, "bluetick_retention_last_run_failed"),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(&text, "bluetick_retention_last_success_timestamp_seconds"),
        success
    );
    // A dry run is not a run of the schedule: nothing pushed for it.
    let (ok, _) = run_once(&cfg, &dir, &["retention", "--dry-run"]).await;
    assert!(ok);
    assert_eq!(
        value(&pushed().await, "bluetick_retention_last_run_failed"),
        1.0
    );
    // Migrate reports itself too.
    let (ok, log) = run_once(&cfg, &dir, &["migrate"]).await;
    assert!(ok, "{log}");
    let text = pushed().await;
    assert_eq!(
        metric_sum(&text, "bluetick_migrate_last_run_failed", &[]),
        0.0,
        "{text}"
    );
    assert!(text.contains("bluetick_migrate_last_success_timestamp_seconds"));
    drop_database(&cfg).await;
}

#[tokio::test]
async fn refused_events_come_back_with_replay_once_the_cause_is_fixed() {
    let mut cfg = config();
    sink_config(&mut cfg);
    migrate(&cfg).await;
    // A rule ClickHouse enforces: no `read` status may be stored (a schema problem to fix).
    ch_text(
        &cfg,
        "ALTER TABLE message_status ADD COLUMN guard UInt8 MATERIALIZED throwIf(status = 'read')",
    )
    .await;
    let dir = scratch_dir("replay");
    let ingest = Server::start(&cfg).await;
    let sink = Sink::start(&cfg).await;
    let base = now_secs() - 600;
    let list: Vec<Status> = (0..20u64)
        .map(|i| {
            let number = format!("9197{:08}", i);
            Status {
                message_id: wamid(&number, &format!("RP{i}")),
                status: if i % 2 == 0 { "delivered" } else { "read" },
                ts: base + i,
                number,
            }
        })
        .collect();
    assert_eq!(
        post_signed(ingest.addr, &status_body(&list)).await.status,
        200
    );
    // And a signed body that is not a webhook: its skeleton is a dead letter too.
    assert_eq!(
        post_signed(ingest.addr, b"{\"not\": \"a webhook\"")
            .await
            .status,
        200
    );
    let dead = consume(&cfg.kafka.brokers, &cfg.kafka.dead_letter_topic, 11, WAIT).await;
    assert_eq!(dead.len(), 11);
    let unique = "SELECT uniqExact(event_id) FROM message_status";
    assert_eq!(wait_for_scalar(&cfg, unique, 10, WAIT).await, 10);

    // A dry run counts and changes nothing.
    let (ok, text) = run_once(&cfg, &dir, &["replay"]).await;
    assert!(ok, "{text}");
    assert!(
        text.contains("11 dead letters: 10 selected, 0 left out by the filter, 1 skeletons"),
        "{text}"
    );
    assert!(text.contains("dry run"), "{text}");

    // Replayed before the fix: refused again, counted, exit status 1.
    let (ok, text) = run_once(
        &cfg,
        &dir,
        &[
            "replay",
            "--apply",
            "--reason",
            "throwIf",
            "--wait-secs",
            "60",
        ],
    )
    .await;
    assert!(!ok, "{text}");
    assert!(
        text.contains(
            "replayed 10: 0 stored (or skipped by retention or an erasure), 10 refused again"
        ),
        "{text}"
    );

    // Fixed: the rule goes, and the refused events come back, exactly once each.
    ch_text(&cfg, "ALTER TABLE message_status DROP COLUMN guard").await;
    let (ok, text) = run_once(
        &cfg,
        &dir,
        &[
            "replay",
            "--apply",
            "--table",
            "message_status",
            "--wait-secs",
            "60",
        ],
    )
    .await;
    assert!(ok, "{text}");
    assert!(
        text.contains("replayed 20: 20 stored"),
        "both copies of each refused event: {text}"
    );
    assert!(text.contains(", 0 refused again"), "{text}");
    assert_eq!(scalar(&cfg, unique).await, 20);
    assert_eq!(
        scalar(&cfg, "SELECT count() FROM message_status FINAL").await,
        20
    );
    assert_eq!(
        scalar(
            &cfg,
            "SELECT count() FROM message_status FINAL WHERE status = 'read'"
        )
        .await,
        10
    );
    // Again: nothing new, nothing doubled.
    let (ok, text) = run_once(
        &cfg,
        &dir,
        &[
            "replay",
            "--apply",
            "--table",
            "message_status",
            "--wait-secs",
            "60",
        ],
    )
    .await;
    assert!(ok, "{text}");
    assert_eq!(
        scalar(&cfg, "SELECT count() FROM message_status FINAL").await,
        20
    );
    // A filter that matches nothing replays nothing.
    let (ok, text) = run_once(
        &cfg,
        &dir,
        &[
            "replay",
            "--apply",
            "--since",
            "1m",
            "--reason",
            "no such reason",
        ],
    )
    .await;
    assert!(ok && text.contains("0 selected"), "{text}");
    sink.stop().await;
    ingest.stop().await;
    drop_database(&cfg).await;
}
