//! A short run of the load generator against the real pipeline (ingest, broker, sink,
//! ClickHouse): every request is answered 200, every distinct event the generator made lands
//! exactly once, and the end-to-end probes are seen in ClickHouse.

mod common;

use bluetick_loadtest::drive::{drive, Plan};
use bluetick_loadtest::probe::{ClickHouse, Probes};
use bluetick_loadtest::traffic::{Shape, Traffic};
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_traffic_lands_exactly_once() {
    let (cfg, ingest, sink) = pipeline().await;
    let run = unique("L").replace('-', "");
    let plan = Plan {
        url: format!("http://{}/webhook", ingest.addr)
            .parse()
            .expect("url"),
        rate: 150.0,
        duration: Duration::from_secs(3),
        max_requests: 10_000,
        connections: 64,
        timeout: Duration::from_secs(10),
        probes: 10,
    };
    let probes = Probes::start(ClickHouse {
        url: cfg.clickhouse.url.clone(),
        database: cfg.clickhouse.database.clone(),
        user: cfg.clickhouse.user.clone(),
        password: String::new(),
        id_key: ID_KEY.as_bytes().to_vec(),
    });
    let traffic = Traffic::new(SECRET.as_bytes(), Shape::Mixed, &run, 42);
    let report = drive(&plan, traffic, Some(probes)).await;

    assert_eq!(report.sent, 450, "open loop: rate x duration requests");
    assert_eq!(
        report.ok, report.sent,
        "every request 200: {:?}",
        report.refused
    );
    let (_, seen, sent) = report.end_to_end.as_ref().expect("probes ran");
    assert_eq!((*seen, *sent), (10, 10), "every probe reached ClickHouse");
    assert!(report.latency.len() == report.sent);

    let d = report.distinct;
    assert!(d.statuses > 400 && d.inbound > 10, "{d:?}");
    let statuses = wait_for_scalar(
        &cfg,
        "SELECT uniqExact(event_id) FROM message_status",
        d.statuses,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(statuses, d.statuses, "no status lost");
    let inbound = wait_for_scalar(
        &cfg,
        "SELECT uniqExact(event_id) FROM inbound_message",
        d.inbound,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(inbound, d.inbound, "no inbound message lost");
    let account = scalar(&cfg, "SELECT count() FROM account_event FINAL").await;
    assert!(
        account >= 1 && account <= d.account,
        "account updates stored (same-second ones share a key): {account} of {}",
        d.account
    );
    let final_rows = scalar(&cfg, "SELECT count() FROM message_status FINAL").await;
    assert_eq!(final_rows, d.statuses, "retries collapse to one row each");
    let unmasked = scalar(
        &cfg,
        "SELECT count() FROM message_status WHERE person_masked NOT LIKE '91XXXXXX____'",
    )
    .await;
    assert_eq!(unmasked, 0, "every number masked");

    sink.stop().await;
    ingest.stop().await;
    drop_database(&cfg).await;
}
