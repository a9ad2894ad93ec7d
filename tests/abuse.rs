//! Ingest under abuse before any signature is checked: 200 clients each announcing a 4 MiB
//! unsigned body and sending it slowly hold at most `ingest.body_bytes_in_flight_mib` of
//! memory between them (the rest are answered 503 at once), while Meta-shaped signed webhooks
//! sent alongside keep getting 200. Measured on a real `bluetick ingest` process's RSS.

mod common;

use common::procs::{free_port, scratch_dir, Bluetick};
use common::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SLOW_CLIENTS: usize = 200;
const DECLARED: usize = 4 * 1024 * 1024;
const BUDGET_MIB: u64 = 64;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Announces a 4 MiB body, sends it a megabyte a second, and returns the status line's code
/// (0 if the connection was cut without an answer).
async fn slow_unsigned(addr: std::net::SocketAddr) -> u16 {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return 0;
    };
    let head = format!(
        "POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         x-hub-signature-256: sha256={}\r\ncontent-length: {DECLARED}\r\n\r\n",
        "0".repeat(64)
    );
    if s.write_all(head.as_bytes()).await.is_err() {
        return 0;
    }
    let chunk = vec![b' '; 64 * 1024];
    let mut answer = vec![0u8; 64];
    let mut sent = 0;
    loop {
        tokio::select! {
            n = s.read(&mut answer) => {
                let n = n.unwrap_or(0);
                let text = String::from_utf8_lossy(&answer[..n]);
                return text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
            }
            () = tokio::time::sleep(Duration::from_millis(60)), if sent < DECLARED => {
                if s.write_all(&chunk).await.is_err() {
                    return 0;
                }
                sent += chunk.len();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_unsigned_bodies_are_bounded_and_signed_webhooks_keep_getting_200() {
    let mut cfg = config();
    let port = free_port();
    cfg.ingest.listen = format!("127.0.0.1:{port}");
    cfg.ingest.body_bytes_in_flight_mib = BUDGET_MIB;
    cfg.ingest.body_read_timeout_ms = 6_000;
    let dir = scratch_dir("abuse");
    let ingest = Bluetick::start(&cfg, "ingest", &dir, &cfg.ingest.listen);
    let addr: std::net::SocketAddr = cfg.ingest.listen.parse().expect("addr");
    // Warm up: the producer, its queue and the first requests' buffers.
    let (body, _) = statuses_body(2, "warm");
    for _ in 0..20 {
        assert_eq!(post_signed(addr, &body).await.status, 200);
    }
    let before = rss_kib(ingest.pid());

    let peak = Arc::new(AtomicU64::new(before));
    let (pid, watch) = (ingest.pid(), Arc::clone(&peak));
    let sampler = tokio::spawn(async move {
        for _ in 0..150 {
            watch.fetch_max(rss_kib(pid), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let slow: Vec<_> = (0..SLOW_CLIENTS)
        .map(|_| tokio::spawn(slow_unsigned(addr)))
        .collect();
    // Meta's traffic meanwhile: small signed webhooks, 20 a second for 5 seconds.
    let started = Instant::now();
    let mut signed = Vec::new();
    for i in 0..100 {
        let (body, _) = statuses_body(1 + i % 3, &format!("meta{i}"));
        signed.push(post_signed(addr, &body).await.status);
        tokio::time::sleep_until((started + Duration::from_millis(50 * (i as u64 + 1))).into())
            .await;
    }
    let mut codes = std::collections::BTreeMap::new();
    for s in slow {
        *codes.entry(s.await.expect("client")).or_insert(0) += 1;
    }
    let _ = sampler.await;
    let peak = peak.load(Ordering::Relaxed);
    let growth_mib = peak.saturating_sub(before) / 1024;
    eprintln!(
        "abuse: RSS {} MiB before, {} MiB peak (+{growth_mib} MiB) under {SLOW_CLIENTS} slow 4 MiB \
         bodies with a {BUDGET_MIB} MiB budget; slow clients answered {codes:?}",
        before / 1024,
        peak / 1024
    );
    assert!(
        signed.iter().all(|s| *s == 200),
        "signed webhooks: {signed:?}"
    );
    assert!(
        codes.get(&503).copied().unwrap_or(0) >= SLOW_CLIENTS - (BUDGET_MIB as usize / 4) - 1,
        "{codes:?}"
    );
    assert!(
        growth_mib < BUDGET_MIB + 48,
        "RSS grew {growth_mib} MiB with a {BUDGET_MIB} MiB budget"
    );
    ingest.stop();
}
