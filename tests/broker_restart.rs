//! Ingest while its broker stops and comes back: 503 with Retry-After while down, never a
//! 200 without an ack; after the restart every 200'd event is in the topic.
//!
//! Runs a private tansu (the binary `scripts/services.sh` builds; `BLUETICK_TANSU` overrides)
//! on a free loopback port, and ends it by its own PID.

mod common;

use common::*;
use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn tansu_binary() -> String {
    if let Ok(path) = std::env::var("BLUETICK_TANSU") {
        return path;
    }
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services.sh"))
        .arg("tansu-path")
        .output()
        .expect("scripts/services.sh runs");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        std::path::Path::new(&path).exists(),
        "tansu not found at {path:?}: run `scripts/services.sh install` (or set BLUETICK_TANSU)"
    );
    path
}

struct Broker {
    child: Child,
    addr: String,
}

impl Broker {
    fn start(dir: &std::path::Path, port: u16) -> Broker {
        let addr = format!("127.0.0.1:{port}");
        let url = format!("tcp://{addr}");
        let child = Command::new(tansu_binary())
            .current_dir(dir)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("tansu.log"))
                    .expect("tansu log file"),
            )
            .spawn()
            .expect("start tansu");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "private tansu did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { child, addr }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_answers_503_and_acked_events_survive_a_restart() {
    let dir = std::env::temp_dir().join(unique("bluetick-tansu"));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let port = free_port();
    let broker = Broker::start(&dir, port);

    let mut cfg = config();
    cfg.kafka.brokers = broker.addr.clone();
    cfg.ingest.produce_timeout_ms = 1_500;
    let server = Server::start(&cfg).await;

    let mut acked: HashSet<String> = HashSet::new();
    let post_batch = |tag: String| {
        let addr = server.addr;
        async move {
            let (body, _) = statuses_body(20, &tag);
            (post_signed(addr, &body).await, tag)
        }
    };
    let (reply, tag) = post_batch("before".into()).await;
    assert_eq!(reply.status, 200);
    acked.insert(tag);

    broker.stop();
    let (reply, _) = post_batch("while-down".into()).await;
    assert_eq!(reply.status, 503, "no 200 without an ack: {}", reply.body);
    assert!(reply.headers.contains_key("retry-after"));

    let broker = Broker::start(&dir, port);
    // Meta retries; the first attempts may still fail while the producer reconnects.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut recovered = false;
    while Instant::now() < deadline {
        let (reply, tag) = post_batch("after".into()).await;
        if reply.status == 200 {
            acked.insert(tag);
            recovered = true;
            break;
        }
        assert_eq!(
            reply.status, 503,
            "only 503 while recovering: {}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        recovered,
        "ingest did not recover within 30 s of the broker restart"
    );

    let records = consume(
        &broker.addr,
        &cfg.kafka.events_topic,
        40,
        Duration::from_secs(20),
    )
    .await;
    let ids: HashSet<String> = records
        .iter()
        .map(|r| r.json()["message_id"].as_str().unwrap_or("").to_string())
        .collect();
    for tag in &acked {
        for i in 0..20 {
            let id = format!("wamid.{tag}.{i:06}");
            assert!(
                ids.contains(&id),
                "acked event {id} is missing after the restart"
            );
        }
    }
    server.stop().await;
    broker.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
