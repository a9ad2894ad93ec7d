//! `bluetick ingest`: Meta's webhooks in, verified and masked events out to Kafka.
//!
//! [`run`] takes a bound listener and a shutdown future, so tests run the real server on port
//! 0 and stop it with any future. On shutdown it stops accepting, lets in-flight requests
//! finish (bounded by `ingest.shutdown_grace_ms`), then flushes the producer.

pub mod error;
pub mod http;
pub mod parse;
pub mod verify;

use crate::config::{Config, ConfigError};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("kafka producer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Builds the shared state from config: secrets, pepper, producer, metrics.
pub fn state(cfg: &Config) -> Result<http::State, IngestError> {
    cfg.check_ingest()?;
    let i = &cfg.ingest;
    let settings = http::Settings {
        max_body_bytes: i.max_body_bytes as usize,
        body_read_timeout: Duration::from_millis(i.body_read_timeout_ms),
        produce_timeout: Duration::from_millis(i.produce_timeout_ms),
        max_in_flight: i.max_in_flight_requests,
        retry_after_secs: i.retry_after_secs,
        max_pending_security_events: i.max_pending_security_events,
        events_topic: cfg.kafka.events_topic.clone(),
        security_topic: cfg.kafka.security_topic.clone(),
        dead_letter_topic: cfg.kafka.dead_letter_topic.clone(),
    };
    let producer = crate::kafka::Producer::new(&cfg.kafka, "bluetick-ingest")?;
    Ok(http::State::new(
        settings,
        verify::Verifier::new(
            i.app_secret.expose().as_bytes(),
            i.app_secret_previous.expose().as_bytes(),
        ),
        i.verify_token.expose().to_string(),
        crate::privacy::Pepper::new(cfg.pepper()?.expose().as_bytes()),
        crate::privacy::IdKey::new(cfg.id_key()?.expose().as_bytes()),
        producer,
        crate::metrics::install(),
    ))
}

/// Serves webhooks on `listener` until `shutdown` completes.
pub async fn run(
    cfg: &Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), IngestError> {
    let state = Arc::new(state(cfg)?);
    if cfg.kafka.create_topics {
        if let Err(e) = crate::kafka::topics::ensure(&cfg.kafka, Duration::from_secs(10)).await {
            // Serve anyway: requests answer 503 (Meta retries) and /readyz says not ready
            // until the broker is back.
            tracing::error!(error = %e, "could not create topics; answering 503 until the broker is reachable");
        }
    }
    let local = listener.local_addr().ok();
    tracing::info!(addr = ?local, "ingest listening");

    let mut server = http1::Builder::new();
    server
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(cfg.ingest.header_read_timeout_ms))
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let handler = http::Handler::new(Arc::clone(&state), peer);
                let conn = graceful.watch(server.serve_connection(TokioIo::new(stream), handler));
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection closed with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    let grace = Duration::from_millis(cfg.ingest.shutdown_grace_ms);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing remaining connections");
    }
    let producer = state.producer.clone();
    let flushed = tokio::task::spawn_blocking(move || producer.flush(grace)).await;
    if !matches!(flushed, Ok(Ok(()))) {
        tracing::warn!("producer flush did not complete");
    }
    Ok(())
}
