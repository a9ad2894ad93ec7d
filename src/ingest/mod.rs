//! `bluetick ingest`: Meta's webhooks in, verified and masked events out to Kafka.
//!
//! [`run`] takes a bound listener and a shutdown future, so tests run the real server on port
//! 0 and stop it with any future. On shutdown it stops accepting, lets in-flight requests
//! finish (bounded by `ingest.shutdown_grace_ms`), then flushes the producer.

pub mod error;
pub mod http;
pub mod limits;
pub mod parse;
pub mod security;
pub mod tenants;
pub mod verify;
pub mod workers;

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
    #[error(transparent)]
    Setup(#[from] crate::kafka::SetupError),
    #[error(transparent)]
    Tenants(#[from] tenants::TenantMapError),
    #[error("starting worker threads: {0}")]
    Workers(std::io::Error),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// Builds the shared state from config: secrets, pepper, producer, metrics.
pub fn state(cfg: &Config) -> Result<http::State, IngestError> {
    cfg.check_ingest()?;
    let i = &cfg.ingest;
    let settings = http::Settings {
        max_body_bytes: i.max_body_bytes as usize,
        body_read_timeout: Duration::from_millis(i.body_read_timeout_ms),
        produce_timeout: Duration::from_millis(i.produce_timeout_ms),
        retry_after_secs: i.retry_after_secs,
        max_pending_security_events: i.max_pending_security_events,
        metrics_elsewhere: !i.metrics_listen.is_empty(),
        trusted_proxies: cfg.trusted_proxies()?,
        events_topic: cfg.kafka.events_topic.clone(),
        record_format: cfg.kafka.record_format,
        security_topic: cfg.kafka.security_topic.clone(),
        dead_letter_topic: cfg.kafka.dead_letter_topic.clone(),
    };
    let health = crate::health::Health::default();
    // Statistics every 5 s; a minute without them means the producer's threads are stuck.
    let producer_alive = health.watch("kafka producer", Duration::from_secs(60));
    let producer =
        crate::kafka::Producer::new(&cfg.kafka, "bluetick-ingest", Some(producer_alive))?;
    let apps = cfg
        .all_apps()?
        .into_iter()
        .map(|a| http::App {
            verifier: verify::Verifier::new(
                a.current.expose().as_bytes(),
                a.previous.expose().as_bytes(),
            ),
            verify_token: a.verify_token.expose().to_string(),
            name: a.name,
        })
        .collect();
    Ok(http::State::new(
        settings,
        apps,
        tenants::Tenants::load(&i.tenant_map)?,
        crate::privacy::Pepper::new(cfg.pepper()?.expose().as_bytes()),
        crate::privacy::IdKey::new(cfg.id_key()?.expose().as_bytes()),
        producer,
        crate::metrics::install(),
        limits::Admission::new(
            i.max_in_flight_requests,
            i.small_body_bytes,
            i.body_bytes_in_flight_mib * 1024 * 1024,
        ),
        security::SecurityTally::new(i.max_security_sources as usize),
        health,
    ))
}

/// What runs beside the request handlers until `stop`: the security-event window, the gauges,
/// and, when `ingest.metrics_listen` is set, the metrics listener.
async fn side_tasks(
    cfg: &Config,
    state: &Arc<http::State>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, IngestError> {
    let mut tasks = Vec::new();
    let window = Duration::from_millis(cfg.ingest.security_event_window_ms.max(10));
    if !cfg.ingest.tenant_map.is_empty() {
        let (st, mut rx) = (Arc::clone(state), stop.clone());
        let every = Duration::from_millis(cfg.ingest.tenant_map_reload_ms.max(100));
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => match st.tenants.reload_if_changed() {
                        Ok(true) => tracing::info!(entries = st.tenants.get().len(), "tenant map reloaded"),
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "tenant map not reloaded; the previous one stays in use"),
                    },
                    _ = rx.wait_for(|s| *s) => return,
                }
            }
        }));
    }
    let (st, mut rx) = (Arc::clone(state), stop.clone());
    // Ticks every second; half a minute without one means the runtime is wedged.
    let ticker = state.health.watch("ingest ticker", Duration::from_secs(30));
    ticker.beat();
    tasks.push(tokio::spawn(async move {
        let mut gauges = tokio::time::interval(Duration::from_secs(1));
        let mut flush = tokio::time::interval(window);
        loop {
            tokio::select! {
                _ = gauges.tick() => {
                    ticker.beat();
                    st.publish_gauges();
                }
                _ = flush.tick() => st.flush_security(),
                _ = rx.wait_for(|s| *s) => return,
            }
        }
    }));
    let addr = &cfg.ingest.metrics_listen;
    if !addr.is_empty() {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| IngestError::Bind {
                addr: addr.clone(),
                source,
            })?;
        tracing::info!(addr = %addr, "metrics listening");
        let mut rx = stop;
        let endpoints = crate::ops::Endpoints {
            metrics: state.metrics.clone(),
            health: state.health.clone(),
            ready: None,
        };
        tasks.push(tokio::spawn(crate::ops::serve(
            listener,
            endpoints,
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        )));
    }
    Ok(tasks)
}

/// Serves webhooks on `listener` until `shutdown` completes.
pub async fn run(
    cfg: &Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), IngestError> {
    let state = Arc::new(state(cfg)?);
    // A wrong TLS or SASL setting stops the start; a broker that is down does not: requests
    // answer 503 (Meta retries) and /readyz says not ready until it is back.
    crate::kafka::prepare(&cfg.kafka).await?;
    let local = listener.local_addr().ok();
    tracing::info!(addr = ?local, "ingest listening");
    let (stop_side, side_stopped) = tokio::sync::watch::channel(false);
    let side = side_tasks(cfg, &state, side_stopped).await?;

    let mut server = http1::Builder::new();
    server
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(cfg.ingest.header_read_timeout_ms))
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let mut workers = workers::Workers::start(cfg.ingest.worker_threads as usize)
        .map_err(IngestError::Workers)?;
    tracing::info!(
        workers = workers.count(),
        "connections served by worker threads"
    );
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
                workers.spawn(async move {
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
    drop(workers);
    let _ = stop_side.send(true);
    for task in side {
        let _ = task.await;
    }
    state.flush_security();
    let producer = state.producer.clone();
    let flushed = tokio::task::spawn_blocking(move || producer.flush(grace)).await;
    if !matches!(flushed, Ok(Ok(()))) {
        tracing::warn!("producer flush did not complete");
    }
    Ok(())
}
