//! Ingest end to end against the real broker: what Meta sends in, what lands in Kafka.

mod common;

use bluetick::model::record;
use bluetick::privacy::{MaskedPhone, Pepper};
use common::*;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_echoes_the_challenge_only_for_the_right_token() {
    let cfg = config();
    let server = Server::start(&cfg).await;
    let ok = get(
        server.addr,
        &format!("/webhook?hub.mode=subscribe&hub.verify_token={TOKEN}&hub.challenge=1158201444"),
    )
    .await;
    assert_eq!((ok.status, ok.body.as_str()), (200, "1158201444"));
    let bad = get(
        server.addr,
        "/webhook?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1",
    )
    .await;
    assert_eq!((bad.status, bad.body.as_str()), (403, "bad_verify_token"));
    let no_mode = get(
        server.addr,
        &format!("/webhook?hub.verify_token={TOKEN}&hub.challenge=1"),
    )
    .await;
    assert_eq!(no_mode.status, 403);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_burst_lands_exactly_once_and_masked() {
    let cfg = config();
    let server = Server::start(&cfg).await;
    let (body, numbers) = statuses_body(600, "burst");
    let reply = post_signed(server.addr, &body).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok"));

    let records = consume_events(&cfg.kafka.brokers, &cfg.kafka.events_topic, 600, WAIT).await;
    let events: Vec<_> = records.iter().flat_map(|r| r.events()).collect();
    assert_eq!(events.len(), 600, "exactly one event per status");
    assert!(
        records.len() <= 600 / 50,
        "events travel grouped, not one record each: {} records",
        records.len()
    );
    for r in &records {
        assert!(r.key.is_none(), "unkeyed, for the sticky partitioner");
        assert!(
            r.payload.len() < record::TARGET_BYTES + 2048,
            "closed near the target size"
        );
    }
    let pepper = Pepper::new(PEPPER.as_bytes());
    let mut ids = HashSet::new();
    let mut message_ids = HashSet::new();
    // The pseudonym each status's wamid must arrive as, to the index of its status.
    let index: std::collections::HashMap<String, usize> = numbers
        .iter()
        .enumerate()
        .map(|(i, n)| (key(&wamid(n, &format!("burst{i:06}"))), i))
        .collect();
    for e in &events {
        assert_eq!(e["kind"], "status");
        assert!(ids.insert(e["id"].to_string()), "duplicate event id");
        let message_id = e["message_key"].as_str().expect("message key").to_string();
        let i = index[&message_id];
        let number = &numbers[i];
        assert_eq!(
            e["person_masked"],
            MaskedPhone::from_digits(number).as_str()
        );
        assert_eq!(
            e["person_hash"],
            pepper.hash_phone(number).to_hex().as_str()
        );
        message_ids.insert(message_id);
        let text = e.to_string();
        assert!(
            !text.contains(number.as_str()) && !text.contains("SECRET"),
            "{text}"
        );
    }
    assert_eq!(message_ids.len(), 600);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_missing_signatures_are_refused_and_nothing_is_stored() {
    let cfg = config();
    let server = Server::start(&cfg).await;
    let (body, _) = statuses_body(4, "forged");
    let forged = bluetick::ingest::verify::sign(b"not-the-secret", &body);
    let json = ("content-type", "application/json");
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[json, ("x-hub-signature-256", &forged)], "bad_signature"),
        (&[json], "missing_signature"),
        (
            &[json, ("x-hub-signature-256", &forged[..30])],
            "malformed_signature",
        ),
    ];
    for (headers, code) in cases {
        let reply = post(server.addr, &body, headers).await;
        assert_eq!((reply.status, reply.body.as_str()), (401, code));
    }
    // A signature over other bytes fails too: the body is verified as received.
    let mut changed = body.clone();
    changed.push(b' ');
    let reply = post(
        server.addr,
        &changed,
        &[json, ("x-hub-signature-256", &sign(&body))],
    )
    .await;
    assert_eq!(reply.status, 401);

    let security = consume_security(&cfg.kafka.brokers, &cfg.kafka.security_topic, 4, WAIT).await;
    let reasons: Vec<String> = security
        .iter()
        .map(|r| r.json()["reason"].as_str().unwrap_or("").to_string())
        .collect();
    let refusals: u64 = security
        .iter()
        .map(|r| r.json()["count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(refusals, 4, "counted per source and reason: {reasons:?}");
    assert!(security.len() <= 4, "{reasons:?}");
    for want in ["bad_signature", "missing_signature", "malformed_signature"] {
        assert!(reasons.iter().any(|r| r == want), "{reasons:?}");
    }
    for r in &security {
        let e = r.json();
        assert_eq!(e["source_ip"], "127.0.0.1");
        assert!(
            !r.text().contains("wamid") && !r.text().contains("sha256"),
            "{}",
            r.text()
        );
    }
    let events = consume(
        &cfg.kafka.brokers,
        &cfg.kafka.events_topic,
        1,
        Duration::from_secs(2),
    )
    .await;
    assert!(
        events.is_empty(),
        "refused requests produced {} events",
        events.len()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_and_numbers_never_reach_kafka() {
    let cfg = config();
    let server = Server::start(&cfg).await;
    let fixtures = [
        "inbound_mix.json",
        "status_sent.json",
        "status_failed.json",
        "status_read_pmp.json",
        "updates.json",
        "value_errors.json",
    ];
    for f in fixtures {
        let reply = post_signed(server.addr, &fixture(f)).await;
        assert_eq!(reply.status, 200, "{f}: {}", reply.body);
    }
    // 10 inbound + 1 + 1 + 2 statuses + 5 updates + 1 error
    let records = consume_events(&cfg.kafka.brokers, &cfg.kafka.events_topic, 20, WAIT).await;
    let events: Vec<_> = records.iter().flat_map(|r| r.events()).collect();
    assert_eq!(events.len(), 20);
    let kinds: HashSet<String> = events
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or("").to_string())
        .collect();
    for k in [
        "status",
        "message",
        "error",
        "template_status",
        "template_quality",
        "phone_quality",
        "account_update",
        "other",
    ] {
        assert!(kinds.contains(k), "missing kind {k}: {kinds:?}");
    }
    for r in &records {
        let text = r.text();
        for leak in [
            "SECRET",
            "15551234567",
            "919876544321",
            "447700900123",
            "919000012345",
            "12.971599",
            "Priya",
            "4111",
        ] {
            assert!(!text.contains(leak), "{leak} reached Kafka: {text}");
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_body_that_cannot_parse_is_dead_lettered_as_its_skeleton() {
    let cfg = config();
    let server = Server::start(&cfg).await;
    let body = b"{\"object\":\"whatsapp_business_account\",\"entry\":[{\"changes\": \"SECRET 919812345678 trunc".to_vec();
    let reply = post_signed(server.addr, &body).await;
    assert_eq!(
        reply.status, 200,
        "Meta must stop retrying what can never parse"
    );
    let dlq = consume(&cfg.kafka.brokers, &cfg.kafka.dead_letter_topic, 1, WAIT).await;
    assert_eq!(dlq.len(), 1);
    let skeleton = dlq[0].json();
    assert_eq!(skeleton["size"], body.len(), "{skeleton}");
    assert_eq!(
        skeleton["sha256"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body))
    );
    assert_eq!(skeleton["json"], false);
    let text = dlq[0].text();
    assert!(
        !text.contains("SECRET") && !text.contains("919812345678"),
        "{text}"
    );
    assert!(dlq[0]
        .headers
        .iter()
        .any(|(k, v)| k == "bluetick-error" && !v.is_empty()));
    let events = consume(
        &cfg.kafka.brokers,
        &cfg.kafka.events_topic,
        1,
        Duration::from_secs(2),
    )
    .await;
    assert!(events.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_type_and_slow_client_limits() {
    let mut cfg = config();
    cfg.ingest.max_body_bytes = 2048;
    cfg.ingest.body_read_timeout_ms = 500;
    let server = Server::start(&cfg).await;
    let (big, _) = statuses_body(20, "big");
    assert!(big.len() > 2048);
    assert_eq!(post_signed(server.addr, &big).await.status, 413);

    let (small, _) = statuses_body(2, "small");
    let sig = sign(&small);
    let reply = post(
        server.addr,
        &small,
        &[
            ("content-type", "text/plain"),
            ("x-hub-signature-256", &sig),
        ],
    )
    .await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (415, "unsupported_content_type")
    );

    // Chunked bodies declare no length: the cap applies to the bytes read.
    let addr = server.addr;
    let chunked = tokio::task::spawn_blocking(move || {
        raw_exchange(addr, |s| {
            write!(s, "POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-hub-signature-256: sha256=00\r\ntransfer-encoding: chunked\r\n\r\n")?;
            for _ in 0..3 {
                write!(s, "400\r\n{}\r\n", "a".repeat(0x400))?;
            }
            write!(s, "0\r\n\r\n")
        })
    })
    .await
    .expect("thread");
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");

    // A client that stops sending mid-body is timed out.
    let slow = tokio::task::spawn_blocking(move || {
        raw_exchange(addr, |s| {
            write!(s, "POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"entry\"")
        })
    })
    .await
    .expect("thread");
    assert!(slow.starts_with("HTTP/1.1 408"), "{slow}");
    server.stop().await;
}

/// Writes a hand-made request and reads the answer until the server closes or 5 s pass.
fn raw_exchange(
    addr: std::net::SocketAddr,
    write: impl FnOnce(&mut std::net::TcpStream) -> std::io::Result<()>,
) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write(&mut s).expect("write");
    let mut out = vec![0u8; 4096];
    let n = s.read(&mut out).unwrap_or(0);
    String::from_utf8_lossy(&out[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_answers_503_with_retry_after() {
    let mut cfg = config();
    cfg.kafka.brokers = "127.0.0.1:1".into();
    cfg.kafka.create_topics = false;
    cfg.ingest.produce_timeout_ms = 1_000;
    let server = Server::start(&cfg).await;
    let (body, _) = statuses_body(3, "down");
    let reply = post_signed(server.addr, &body).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(
        reply
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    assert_eq!(get(server.addr, "/readyz").await.status, 503);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_producer_queue_answers_503_at_once() {
    let mut cfg = config();
    // 1000 statuses are several records in either format (see `model::record`); the queue
    // takes one.
    cfg.kafka.queue_max_messages = 1;
    let server = Server::start(&cfg).await;
    let (body, _) = statuses_body(1000, "full");
    let reply = post_signed(server.addr, &body).await;
    assert_eq!((reply.status, reply.body.as_str()), (503, "queue_full"));
    assert!(reply.headers.contains_key("retry-after"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_app_secret_is_accepted_during_rotation() {
    let mut cfg = config();
    cfg.ingest.app_secret_previous = cfg.ingest.app_secret.clone();
    cfg.ingest.app_secret = bluetick::config::Secret("Zr5Qn8Wt2Lx7Bv4Mk1Pj".into());
    let server = Server::start(&cfg).await;
    let (body, _) = statuses_body(2, "rotation");
    assert_eq!(
        post_signed(server.addr, &body).await.status,
        200,
        "old secret still valid"
    );
    let new_sig = bluetick::ingest::verify::sign(b"Zr5Qn8Wt2Lx7Bv4Mk1Pj", &body);
    let reply = post(
        server.addr,
        &body,
        &[
            ("content-type", "application/json"),
            ("x-hub-signature-256", &new_sig),
        ],
    )
    .await;
    assert_eq!(reply.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let cfg = config();
    let server = Server::start(&cfg).await;
    assert_eq!(get(server.addr, "/healthz").await.status, 200);
    assert_eq!(get(server.addr, "/readyz").await.status, 200);
    let (body, _) = statuses_body(10, "metrics");
    assert_eq!(post_signed(server.addr, &body).await.status, 200);
    let metrics = get(server.addr, "/metrics").await;
    assert_eq!(metrics.status, 200);
    for name in [
        "bluetick_ingest_requests_total{route=\"webhook\",outcome=\"ok\"}",
        "bluetick_ingest_events_total{kind=\"status\"}",
        "bluetick_ingest_produce_duration_seconds_bucket",
        "bluetick_ingest_producer_queue_messages",
        "bluetick_ingest_in_flight_requests",
    ] {
        assert!(metrics.body.contains(name), "{name} missing from /metrics");
    }
    // Other tests in this process count into the same series, hence at-least.
    let value = |series: &str| -> f64 {
        metrics
            .body
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{series} has no value in /metrics"))
    };
    assert!(value("bluetick_ingest_requests_total{route=\"webhook\",outcome=\"ok\"}") >= 1.0);
    assert!(value("bluetick_ingest_events_total{kind=\"status\"}") >= 10.0);
    assert!(value("bluetick_ingest_produce_duration_seconds_count") >= 1.0);
    assert!(value("bluetick_ingest_request_duration_seconds_count{route=\"webhook\"}") >= 1.0);
    assert_eq!(get(server.addr, "/nope").await.status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_live_on_their_own_listener() {
    let mut cfg = config();
    let port = common::procs::free_port();
    cfg.ingest.metrics_listen = format!("127.0.0.1:{port}");
    let server = Server::start(&cfg).await;
    assert_eq!(
        get(server.addr, "/metrics").await.status,
        404,
        "not beside the webhook"
    );
    assert_eq!(get(server.addr, "/readyz").await.status, 200);
    let metrics_addr: std::net::SocketAddr = cfg.ingest.metrics_listen.parse().expect("addr");
    let deadline = std::time::Instant::now() + WAIT;
    let mut reply = get(metrics_addr, "/metrics").await;
    while reply.status != 200 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        reply = get(metrics_addr, "/metrics").await;
    }
    assert_eq!(reply.status, 200);
    assert!(
        reply.body.contains("bluetick_ingest_in_flight_requests"),
        "{}",
        reply.body
    );
    server.stop().await;
}

/// The source of a refused request is the peer, unless the peer is a trusted proxy: then it
/// is the last address before it in `X-Forwarded-For`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_sources_are_believed_only_from_trusted_proxies() {
    for (trusted, want) in [("", "127.0.0.1"), ("127.0.0.0/8", "203.0.113.7")] {
        let mut cfg = config();
        cfg.ingest.trusted_proxies = trusted.into();
        let server = Server::start(&cfg).await;
        let reply = post(
            server.addr,
            b"{}",
            &[
                ("content-type", "application/json"),
                ("x-forwarded-for", "198.51.100.1, 203.0.113.7"),
            ],
        )
        .await;
        assert_eq!(reply.status, 401);
        let security =
            consume_security(&cfg.kafka.brokers, &cfg.kafka.security_topic, 1, WAIT).await;
        assert_eq!(security.len(), 1);
        assert_eq!(security[0].json()["source_ip"], want, "trusted {trusted:?}");
        server.stop().await;
    }
}
