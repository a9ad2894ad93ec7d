//! Reference (a): the HTTP ceiling of this machine. A hyper server that reads the whole body
//! and answers 200 with no other work; bluetick ingest is measured against it.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Serves until the process ends.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                let read = req.into_body().collect().await.map(|b| b.to_bytes().len());
                let status = if read.is_ok() { 200 } else { 400 };
                hyper::Response::builder()
                    .status(status)
                    .body(Full::new(Bytes::from_static(b"ok")))
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
