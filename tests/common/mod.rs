//! Shared harness for integration tests against the real broker (and, later, ClickHouse)
//! that `scripts/services.sh start` runs: starts the ingest server in-process on port 0 with
//! fresh topics per test, signs bodies like Meta, and reads topics back with a deadline.
#![allow(dead_code)]

pub mod chdb;
pub mod procs;

use bluetick::config::{Config, Secret};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SECRET: &str = "test-app-secret";
pub const TOKEN: &str = "test-verify-token";
pub const PEPPER: &str = "test-pepper-0123456789";

/// The broker the suite runs against; fails loudly if none listens.
pub fn brokers() -> String {
    let addr = std::env::var("BLUETICK_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let first = addr.split(',').next().unwrap_or_default().to_string();
    if std::net::TcpStream::connect_timeout(
        &first.parse().expect("BLUETICK_TEST_KAFKA is host:port"),
        Duration::from_secs(2),
    )
    .is_err()
    {
        panic!(
            "no Kafka-protocol broker on {first}: start one with `scripts/services.sh start` \
             (or point BLUETICK_TEST_KAFKA at one)"
        );
    }
    addr
}

/// The ClickHouse HTTP URL the suite runs against; fails loudly if none answers.
pub fn clickhouse_url() -> String {
    let url = std::env::var("BLUETICK_TEST_CLICKHOUSE")
        .unwrap_or_else(|_| "http://127.0.0.1:8123".into());
    let host = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let reachable = host
        .parse::<std::net::SocketAddr>()
        .ok()
        .and_then(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).ok())
        .is_some();
    assert!(
        reachable,
        "no ClickHouse on {url}: start one with `scripts/services.sh start` \
         (or point BLUETICK_TEST_CLICKHOUSE at one)"
    );
    url
}

/// A name no other test or run uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Config for one test: real broker, fresh topics, test secrets.
pub fn config() -> Config {
    let mut cfg = Config::default();
    cfg.kafka.brokers = brokers();
    let run = unique("t");
    cfg.kafka.events_topic = format!("{run}.events");
    cfg.kafka.security_topic = format!("{run}.security");
    cfg.kafka.dead_letter_topic = format!("{run}.dlq");
    cfg.kafka.partitions = 3;
    cfg.kafka.linger_ms = 1;
    cfg.ingest.listen = "127.0.0.1:0".into();
    cfg.ingest.app_secret = Secret(SECRET.into());
    cfg.ingest.verify_token = Secret(TOKEN.into());
    cfg.ingest.produce_timeout_ms = 5_000;
    cfg.privacy.pepper = Secret(PEPPER.into());
    cfg.clickhouse.database = unique("bt").replace('-', "_");
    cfg
}

pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), bluetick::ingest::IngestError>>,
}

impl Server {
    pub async fn start(cfg: &Config) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let cfg = cfg.clone();
        let task = tokio::spawn(async move {
            bluetick::ingest::run(&cfg, listener, async {
                let _ = rx.await;
            })
            .await
        });
        let server = Server {
            addr,
            stop: Some(tx),
            task,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while get(addr, "/healthz").await.status != 200 {
            assert!(Instant::now() < deadline, "ingest did not answer /healthz");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(20), &mut self.task)
            .await
            .expect("ingest stops within its grace period");
        result.expect("task").expect("ingest exits cleanly");
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

pub fn sign(body: &[u8]) -> String {
    bluetick::ingest::verify::sign(SECRET.as_bytes(), body)
}

/// POSTs `body` to /webhook, signed with the test secret, as Meta does.
pub async fn post_signed(addr: SocketAddr, body: &[u8]) -> Reply {
    let sig = sign(body);
    post(
        addr,
        body,
        &[
            ("content-type", "application/json"),
            ("x-hub-signature-256", &sig),
        ],
    )
    .await
}

pub async fn post(addr: SocketAddr, body: &[u8], headers: &[(&str, &str)]) -> Reply {
    let mut req = http::Request::post(format!("http://{addr}/webhook"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(
        req.body(Full::new(Bytes::copy_from_slice(body)))
            .expect("request"),
    )
    .await
}

pub async fn get(addr: SocketAddr, path_and_query: &str) -> Reply {
    let req = http::Request::get(format!("http://{addr}{path_and_query}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    send(req).await
}

async fn send(req: http::Request<Full<Bytes>>) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .expect("answer within 30 s");
    let Ok(resp) = resp else {
        return Reply {
            status: 0,
            headers: http::HeaderMap::new(),
            body: String::new(),
        };
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

#[derive(Debug, Clone)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("record is JSON")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    /// The events of an events-topic record (one JSON object per line).
    pub fn events(&self) -> Vec<serde_json::Value> {
        bluetick::model::record::lines(&self.payload)
            .map(|r| serde_json::from_slice(&self.payload[r]).expect("each line is JSON"))
            .collect()
    }
}

/// Reads the events topic until `expected` events (lines of records) arrived; see [`consume`].
pub async fn consume_events(
    brokers: &str,
    topic: &str,
    expected: usize,
    within: Duration,
) -> Vec<Record> {
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    let count = |r: &Record| bluetick::model::record::count(&r.payload);
    tokio::task::spawn_blocking(move || consume_blocking(&brokers, &topic, expected, within, count))
        .await
        .expect("consumer thread")
}

/// Reads `topic` from the beginning until `expected` records arrived (then `settle` longer,
/// to catch extras) or `within` passed. Returns what it read.
pub async fn consume(brokers: &str, topic: &str, expected: usize, within: Duration) -> Vec<Record> {
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || consume_blocking(&brokers, &topic, expected, within, |_| 1))
        .await
        .expect("consumer thread")
}

fn consume_blocking(
    brokers: &str,
    topic: &str,
    expected: usize,
    within: Duration,
    count: impl Fn(&Record) -> usize,
) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("log_level", "3")
        .create()
        .expect("consumer");
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let mut tpl = TopicPartitionList::new();
    for t in meta.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("partition");
        }
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + within;
    let mut settle_until: Option<Instant> = None;
    let mut out = Vec::new();
    let mut counted = 0;
    loop {
        let now = Instant::now();
        if now >= deadline || settle_until.is_some_and(|s| now >= s) {
            break;
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| (x.key.to_string(), x.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            let record = Record {
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers,
            };
            counted += count(&record);
            out.push(record);
        }
        if counted >= expected && settle_until.is_none() {
            settle_until = Some(Instant::now() + Duration::from_millis(1500));
        }
    }
    out
}

/// A webhook with `n` distinct statuses spread over two entries; returns the body and the
/// customer numbers in it.
pub fn statuses_body(n: usize, tag: &str) -> (Vec<u8>, Vec<String>) {
    let statuses = ["sent", "delivered", "read", "failed"];
    let mut numbers = Vec::with_capacity(n);
    let make = |range: std::ops::Range<usize>,
                numbers: &mut Vec<String>|
     -> Vec<serde_json::Value> {
        range
            .map(|i| {
                let number = format!("9198{:08}", 10_000_000 + i);
                numbers.push(number.clone());
                serde_json::json!({
                    "id": format!("wamid.{tag}.{i:06}"),
                    "status": statuses[i % statuses.len()],
                    "timestamp": (1_750_000_000 + i).to_string(),
                    "recipient_id": number,
                    "biz_opaque_callback_data": "SECRET-OPAQUE",
                    "pricing": {"billable": true, "pricing_model": "PMP", "category": "utility", "type": "regular"}
                })
            })
            .collect()
    };
    let half = n / 2;
    let first = make(0..half, &mut numbers);
    let second = make(half..n, &mut numbers);
    let change = |statuses: Vec<serde_json::Value>| {
        serde_json::json!({"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "statuses": statuses}})
    };
    let body = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [
            {"id": "102290129340398", "changes": [change(first)]},
            {"id": "102290129340399", "changes": [change(second)]}
        ]
    });
    (serde_json::to_vec(&body).expect("json"), numbers)
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Seconds since the Unix epoch now: sink tests need fresh event times, because the sink
/// skips rows already past retention.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// One status update for [`status_body`].
#[derive(Debug, Clone)]
pub struct Status {
    pub message_id: String,
    pub status: &'static str,
    pub ts: u64,
    pub number: String,
}

/// A webhook carrying `statuses` in the given order, with pricing, a conversation, an
/// error for failures, and content markers (`SECRET`) that must never be stored.
pub fn status_body(statuses: &[Status]) -> Vec<u8> {
    let list: Vec<serde_json::Value> = statuses
        .iter()
        .map(|s| {
            let mut v = serde_json::json!({
                "id": s.message_id,
                "status": s.status,
                "timestamp": s.ts.to_string(),
                "recipient_id": s.number,
                "biz_opaque_callback_data": "SECRET-OPAQUE",
                "conversation": {"id": "conv-1", "origin": {"type": "marketing"}},
                "pricing": {"billable": true, "pricing_model": "PMP", "category": "marketing", "type": "regular"}
            });
            if s.status == "failed" {
                v["errors"] = serde_json::json!([{"code": 131049, "title": "Not delivered",
                    "message": "SECRET-MESSAGE", "error_data": {"details": "SECRET-DETAILS"}}]);
            }
            v
        })
        .collect();
    let body = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "statuses": list}}]}]
    });
    serde_json::to_vec(&body).expect("json")
}

/// The ClickHouse client of a test config, in its database.
pub fn ch(cfg: &Config) -> clickhouse::Client {
    bluetick::migrate::client(&cfg.clickhouse).with_database(&cfg.clickhouse.database)
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
    bluetick::migrate::client(&cfg.clickhouse)
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

/// A TCP relay to a real server that a test can cut and restore, to stage an outage of that
/// server for one component without stopping it for the others.
pub struct Relay {
    pub addr: SocketAddr,
    up: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (up, rx) = tokio::sync::watch::channel(true);
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let mut rx = rx.clone();
                if !*rx.borrow() {
                    continue; // down: the connection is dropped at once
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = rx.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Relay { addr, up }
    }

    /// Cuts every open connection and refuses new ones until [`Relay::restore`].
    pub fn cut(&self) {
        let _ = self.up.send(false);
    }

    pub fn restore(&self) {
        let _ = self.up.send(true);
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

/// Sum over `topic`'s partitions of (high watermark, offset committed by `group`).
pub async fn group_progress(brokers: &str, group: &str, topic: &str) -> (i64, i64) {
    let (brokers, group, topic) = (brokers.to_string(), group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("log_level", "3")
            .create()
            .expect("consumer");
        let timeout = Duration::from_secs(10);
        let meta = consumer
            .fetch_metadata(Some(&topic), timeout)
            .expect("topic metadata");
        let mut tpl = TopicPartitionList::new();
        let mut high = 0;
        for t in meta.topics() {
            for p in t.partitions() {
                tpl.add_partition(&topic, p.id());
                let (_, hi) = consumer
                    .fetch_watermarks(&topic, p.id(), timeout)
                    .expect("watermarks");
                high += hi;
            }
        }
        let committed = consumer
            .committed_offsets(tpl, timeout)
            .expect("committed offsets");
        let done: i64 = committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(n) => Some(n),
                _ => None,
            })
            .sum();
        (high, done)
    })
    .await
    .expect("admin thread")
}

/// Waits until `group` has committed everything in `topic`.
pub async fn wait_committed(
    brokers: &str,
    group: &str,
    topic: &str,
    within: Duration,
) -> (i64, i64) {
    let deadline = Instant::now() + within;
    loop {
        let (high, done) = group_progress(brokers, group, topic).await;
        if (high == done && high > 0) || Instant::now() >= deadline {
            return (high, done);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
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

/// A webhook with one inbound message per `(sender number, message id)`, alternating text and
/// image, with content (body, caption, media id, profile name) marked `SECRET` that must
/// never be stored.
pub fn inbound_body(from: &[(String, String)], ts: u64) -> Vec<u8> {
    let messages: Vec<serde_json::Value> = from
        .iter()
        .enumerate()
        .map(|(i, (number, id))| {
            let mut m = serde_json::json!({"from": number, "id": id, "timestamp": ts.to_string()});
            if i % 2 == 0 {
                m["type"] = "text".into();
                m["text"] = serde_json::json!({"body": "SECRET-BODY"});
            } else {
                m["type"] = "image".into();
                m["image"] = serde_json::json!({"id": "SECRET-MEDIA", "caption": "SECRET-CAPTION"});
            }
            m
        })
        .collect();
    let contacts: Vec<serde_json::Value> = from
        .iter()
        .map(|(number, _)| serde_json::json!({"profile": {"name": "SECRET-NAME"}, "wa_id": number}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": contacts,
            "messages": messages}}]}]
    }))
    .expect("json")
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
    bluetick::migrate::client(&cfg.clickhouse)
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
