//! The operations endpoints every component answers: `GET /metrics` (Prometheus text) and
//! `GET /healthz`. [`serve`] is the whole server for components without an HTTP server of
//! their own (the sink); ingest answers the same routes on its webhook listener with the same
//! [`metrics`] and [`text`] replies.

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use std::convert::Infallible;
use std::future::Future;
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

/// Serves `GET /metrics` and `GET /healthz` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
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
        let handle = handle.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
            let reply = match (req.method(), req.uri().path()) {
                (&Method::GET, "/metrics") => metrics(&handle),
                (&Method::GET, "/healthz") => text(200, "ok\n"),
                _ => text(404, "not found\n"),
            };
            std::future::ready(Ok::<_, Infallible>(reply))
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
