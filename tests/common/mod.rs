//! Shared harness for integration tests against the real broker and ClickHouse that
//! `scripts/services.sh start` runs. A test fails with a message saying how to start them if
//! it finds none. The pieces, by what they serve:
//! - [`http`]: the ingest server in-process on port 0, and a client that signs like Meta;
//! - [`kafka`]: reading topics back with a deadline, consumer-group progress;
//! - [`store`]: ClickHouse helpers and the sink in-process, the whole pipeline per test;
//! - [`bodies`]: Meta-shaped webhooks with content markers and the fixtures;
//! - [`relay`]: a TCP relay a test cuts to stage an outage;
//! - [`audit`]: every table and topic read back and scanned for people and content;
//! - [`chdb`], [`procs`]: current ClickHouse embedded, and real `bluetick` processes;
//! - [`cluster`]: ZooKeeper and a three-server ClickHouse cluster, for the scale-out tests.
#![allow(dead_code, unused_imports)]

pub mod audit;
pub mod bodies;
pub mod chdb;
pub mod cluster;
pub mod http;
pub mod kafka;
pub mod procs;
pub mod relay;
pub mod store;

pub use audit::*;
pub use bodies::*;
pub use http::*;
pub use kafka::*;
pub use relay::*;
pub use store::*;

use bluetick::config::{Config, Secret};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Secrets of the test configs: random-looking, since bluetick refuses placeholders.
pub const SECRET: &str = "Kq3vX8pZ2mLw7nRt9yBc";
pub const TOKEN: &str = "verify-token-4471";
pub const PEPPER: &str = "P4x9Lm2Qv7Zt1Wk8Rj5N";
pub const ID_KEY: &str = "I7d2Hs9Fq4Kx1Nb6Vm3Y";

/// The pseudonym the pipeline stores for Meta id `raw` under the test id key.
pub fn key(raw: &str) -> String {
    bluetick::privacy::IdKey::new(ID_KEY.as_bytes())
        .pseudonym(raw)
        .to_string()
}

/// A message id as Meta makes them (base64 with `number` inside, in clear), unique per tag.
pub fn wamid(number: &str, tag: &str) -> String {
    bluetick_loadtest::traffic::wamid(&number.replace(['+', ' '], ""), &tag.to_uppercase())
}

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
    cfg.privacy.id_key = Secret(ID_KEY.into());
    // Refused requests are written per window; a short one keeps tests quick.
    cfg.ingest.security_event_window_ms = 200;
    cfg.clickhouse.database = unique("bt").replace('-', "_");
    cfg
}

/// Seconds since the Unix epoch now: sink tests need fresh event times, because the sink
/// skips rows already past retention.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}
