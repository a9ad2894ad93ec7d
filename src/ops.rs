//! The operations endpoints every component answers: `GET /metrics` (Prometheus text),
//! `GET /healthz` (liveness: 503 when a watched loop stalled, see [`crate::health`]) and
//! `GET /readyz` (readiness: whether the component can do its work now, e.g. reach its
//! servers). [`serve`] is the whole server for components without an HTTP server of their own
//! (the sink, the audit, ingest's separate metrics listener); ingest's webhook listener answers
//! the same routes with the same replies.

use crate::health::Health;
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub type Reply = Response<Full<Bytes>>;

/// A plain-text reply.
pub fn text(status: u16, body: &str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The Prometheus exposition of every metric this process recorded.
pub fn metrics(handle: &PrometheusHandle) -> Reply {
    let mut r = text(200, &handle.render());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

/// A readiness check: the status and reason `/readyz` answers.
pub type ReadyCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = (u16, String)> + Send>> + Send + Sync>;

/// What [`serve`] answers with.
#[derive(Clone)]
pub struct Endpoints {
    pub metrics: PrometheusHandle,
    pub health: Health,
    /// `None`: ready whenever live.
    pub ready: Option<ReadyCheck>,
}

/// `GET /healthz` from the component's watches.
pub fn healthz(health: &Health) -> Reply {
    let (status, body) = health.report();
    text(status, &body)
}

/// Serves `GET /metrics`, `GET /healthz` and `GET /readyz` on `listener` until `shutdown`
/// completes.
pub async fn serve(
    listener: TcpListener,
    endpoints: Endpoints,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let endpoints = endpoints.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
            let endpoints = endpoints.clone();
            async move {
                let reply = match (req.method(), req.uri().path()) {
                    (&Method::GET, "/metrics") => metrics(&endpoints.metrics),
                    (&Method::GET, "/healthz") => healthz(&endpoints.health),
                    (&Method::GET, "/readyz") => match &endpoints.ready {
                        Some(check) => {
                            let (status, body) = check().await;
                            text(status, &body)
                        }
                        None => healthz(&endpoints.health),
                    },
                    _ => text(404, "not found\n"),
                };
                Ok::<_, Infallible>(reply)
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
