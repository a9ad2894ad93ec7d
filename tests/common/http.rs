//! The ingest server in-process on port 0, and an HTTP client that signs bodies like Meta.

use super::SECRET;
use bluetick::config::Config;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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

impl Drop for Server {
    /// A test that panics before `stop` still ends its server: the shutdown future fires and
    /// the task ends on its own.
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
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

pub async fn send(req: http::Request<Full<Bytes>>) -> Reply {
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
