//! ClickHouse helpers, the sink in-process, and the whole pipeline for one test.

use super::http::{send, Server};
use super::{clickhouse_url, config, unique};
use bluetick::config::Config;
use bytes::Bytes;
use http_body_util::Full;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The ClickHouse client of a test config, in its database.
pub fn ch(cfg: &Config) -> clickhouse::Client {
    bluetick::clickhouse::client(&cfg.clickhouse)
        .expect("clickhouse client")
        .with_database(&cfg.clickhouse.database)
}

/// Creates the test's database and tables.
pub async fn migrate(cfg: &Config) {
    let mut out = Vec::new();
    bluetick::migrate::run(cfg, &mut out)
        .await
        .expect("migrate the test database");
}

pub async fn drop_database(cfg: &Config) {
    let sql = format!("DROP DATABASE IF EXISTS `{}`", cfg.clickhouse.database);
    bluetick::clickhouse::client(&cfg.clickhouse)
        .expect("clickhouse client")
        .query(&sql)
        .execute()
        .await
        .expect("drop database");
}

/// A single number from `sql`.
pub async fn scalar(cfg: &Config, sql: &str) -> u64 {
    ch(cfg)
        .query(sql)
        .fetch_one::<u64>()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Polls `sql` until it returns `expected` or `within` passes; returns the last value.
pub async fn wait_for_scalar(cfg: &Config, sql: &str, expected: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let got = ch(cfg).query(sql).fetch_one::<u64>().await.unwrap_or(0);
        if got == expected || Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The sink, running in-process with its own consumer group.
pub struct Sink {
    pub metrics: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<bluetick::sink::Totals, bluetick::sink::SinkError>>,
}

impl Sink {
    pub async fn start(cfg: &Config) -> Sink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let metrics = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let cfg = cfg.clone();
        let task = tokio::spawn(async move {
            bluetick::sink::run(&cfg, listener, async {
                let _ = rx.await;
            })
            .await
        });
        Sink {
            metrics,
            stop: Some(tx),
            task,
        }
    }

    pub async fn stop(mut self) -> bluetick::sink::Totals {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("sink stops");
        result.expect("task").expect("sink exits cleanly")
    }
}

/// Sink settings for tests: fresh group, short batches, fast retries.
pub fn sink_config(cfg: &mut Config) {
    cfg.clickhouse.url = clickhouse_url();
    cfg.sink.group_id = unique("sink");
    cfg.sink.batch_max_age_ms = 200;
    cfg.sink.retry_initial_ms = 100;
    cfg.sink.retry_max_ms = 1_000;
    cfg.sink.insert_timeout_ms = 5_000;
}

impl Drop for Sink {
    /// A test that panics before `stop` still ends its sink (which commits nothing it did not
    /// store).
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// `sql`'s result as TSV text, read over ClickHouse's HTTP interface.
pub async fn ch_text(cfg: &Config, sql: &str) -> String {
    let url = format!(
        "{}/?database={}",
        cfg.clickhouse.url.trim_end_matches('/'),
        cfg.clickhouse.database
    );
    let req = http::Request::post(url)
        .body(Full::new(Bytes::from(sql.to_string())))
        .expect("request");
    let reply = send(req).await;
    assert_eq!(reply.status, 200, "{sql}: {}", reply.body);
    reply.body
}

/// The whole pipeline for one test: fresh topics, database and group; schema migrated; ingest
/// and sink running in-process.
pub async fn pipeline() -> (Config, Server, Sink) {
    let mut cfg = config();
    sink_config(&mut cfg);
    migrate(&cfg).await;
    let ingest = Server::start(&cfg).await;
    let sink = Sink::start(&cfg).await;
    (cfg, ingest, sink)
}

/// Sample statuses for queries checked on both ClickHouse versions: message m1 sent, delivered
/// (twice, a retry) and read; m2 sent then failed with a code; m3 sent a day later elsewhere.
pub const SAMPLE_STATUSES_SQL: &str =
    "INSERT INTO message_status (event_id, ts, received_ms, message_id, status, \
     phone_number_id, pricing_category, billable, person_masked, person_hash, error_code, \
     error_title) VALUES \
     ('r1', 1750000300, 1, 'm1', 'read', 'p1', 'utility', 1, '91XXXXXX4321', 'h1', 0, ''), \
     ('d1', 1750000200, 1, 'm1', 'delivered', 'p1', 'utility', 1, '91XXXXXX4321', 'h1', 0, ''), \
     ('d1', 1750000200, 2, 'm1', 'delivered', 'p1', 'utility', 1, '91XXXXXX4321', 'h1', 0, ''), \
     ('s1', 1750000100, 1, 'm1', 'sent', 'p1', 'utility', 1, '91XXXXXX4321', 'h1', 0, ''), \
     ('s2', 1750000100, 1, 'm2', 'sent', 'p1', 'marketing', 1, '91XXXXXX9999', 'h2', 0, ''), \
     ('f2', 1750000150, 1, 'm2', 'failed', 'p1', 'marketing', 1, '91XXXXXX9999', 'h2', 131026, \
      'Message undeliverable'), \
     ('s3', 1750090000, 1, 'm3', 'sent', 'p2', 'utility', 0, '44XXXXXX0000', 'h3', 0, '')";

/// Creates `cfg`'s database on the real server and runs `statements` there in order; SELECTs
/// answer as TSV, like [`chdb::run`] answers for current ClickHouse.
pub async fn run_on_server(cfg: &Config, statements: &[String]) -> Vec<String> {
    bluetick::clickhouse::client(&cfg.clickhouse)
        .expect("clickhouse client")
        .query(&format!("CREATE DATABASE `{}`", cfg.clickhouse.database))
        .execute()
        .await
        .expect("create database");
    let mut out = Vec::new();
    for sql in statements {
        let text = if sql.starts_with("SELECT") {
            ch_text(cfg, &format!("{sql} FORMAT TSV")).await
        } else {
            ch_text(cfg, sql).await
        };
        out.push(text);
    }
    out
}
