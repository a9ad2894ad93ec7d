//! The webhook server's routes: verify, parse, split, produce, answer. What each failure
//! answers is decided in one place, [`super::error`].
//!
//! Invariant kept by [`Handler::webhook`]: a 2xx is sent only after the broker acked every
//! record of the request (its events, or the raw body on the dead-letter topic). Anything
//! short of that answers non-2xx so Meta retries; a full bound answers 503 at once.

use super::error::RequestError;
use super::limits::{source_ip, Admission, Slot};
use super::parse::{self, SplitContext};
use super::security::SecurityTally;
use super::tenants::Tenants;
use super::verify::{Verifier, SIGNATURE_HEADER};
use crate::clock::now_ms;
use crate::health::Health;
use crate::kafka::{Pending, Producer, Reach};
use crate::metrics as m;
use crate::model::record::{Format as RecordFormat, RecordWriter};
use crate::model::skeleton;
use crate::model::EventKind;
use crate::ops::{self, text};
use crate::privacy::{IdKey, Pepper};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::PrometheusHandle;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Limits and topics a handler needs, resolved from config once.
pub struct Settings {
    pub max_body_bytes: usize,
    pub body_read_timeout: Duration,
    pub produce_timeout: Duration,
    pub retry_after_secs: u64,
    pub max_pending_security_events: u64,
    /// `/metrics` is served on a listener of its own: the webhook listener answers 404 there.
    pub metrics_elsewhere: bool,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub events_topic: String,
    /// How events are encoded in the events topic's records.
    pub record_format: RecordFormat,
    pub security_topic: String,
    pub dead_letter_topic: String,
}

/// Shared state of the server: read-only but for the admission counters and the tally of
/// refused requests.
pub struct State {
    pub settings: Settings,
    /// The default app (`/webhook`) first, then the named ones (`/webhook/<name>`).
    pub apps: Vec<App>,
    pub tenants: Tenants,
    pub pepper: Pepper,
    pub id_key: IdKey,
    pub producer: Producer,
    pub metrics: PrometheusHandle,
    pub admission: Admission,
    pub security: SecurityTally,
    pub health: Health,
    hot: HotMetrics,
    pending_security: Arc<AtomicU64>,
}

/// Handles of the series every accepted webhook updates, registered once: looking a series up
/// by its labels costs a hash and a registry lookup, four times per request otherwise.
struct HotMetrics {
    webhook_ok: metrics::Counter,
    webhook_seconds: metrics::Histogram,
    produce_seconds: metrics::Histogram,
    events: [metrics::Counter; EventKind::ALL.len()],
}

impl HotMetrics {
    fn register() -> Self {
        // Series the alerts sum exist from the start, at 0: `increase()` then sees their
        // first increment, and a sum over them is 0 rather than empty.
        counter!(m::INGEST_DEAD_LETTERS).increment(0);
        for cause in [
            "security_sources",
            "security_backlog",
            "security_undelivered",
            "security_queue_full",
        ] {
            counter!(m::INGEST_DROPPED, "cause" => cause).increment(0);
        }
        HotMetrics {
            webhook_ok: counter!(m::INGEST_REQUESTS, "route" => "webhook", "outcome" => "ok"),
            webhook_seconds: histogram!(m::INGEST_REQUEST_SECONDS, "route" => "webhook"),
            produce_seconds: histogram!(m::INGEST_PRODUCE_SECONDS),
            events: EventKind::ALL.map(|k| counter!(m::INGEST_EVENTS, "kind" => k.as_str())),
        }
    }
}

impl State {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: Settings,
        apps: Vec<App>,
        tenants: Tenants,
        pepper: Pepper,
        id_key: IdKey,
        producer: Producer,
        metrics: PrometheusHandle,
        admission: Admission,
        security: SecurityTally,
        health: Health,
    ) -> Self {
        State {
            settings,
            apps,
            tenants,
            pepper,
            id_key,
            producer,
            metrics,
            admission,
            security,
            health,
            hot: HotMetrics::register(),
            pending_security: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Sets the gauges of what is in progress (read by /metrics wherever it is served).
    pub fn publish_gauges(&self) {
        gauge!(m::INGEST_IN_FLIGHT).set(self.admission.in_flight() as f64);
        gauge!(m::INGEST_BODY_BYTES).set(self.admission.body_bytes() as f64);
        gauge!(m::INGEST_PRODUCER_QUEUE).set(self.producer.queue_depth() as f64);
    }

    /// Writes the window's security events (one per source, reason and route, with its
    /// count) without waiting for their acks; what the bound or the queue refuses is counted.
    pub fn flush_security(&self) {
        for event in self.security.drain() {
            let pending_count = self.pending_security.fetch_add(1, Ordering::AcqRel);
            if pending_count >= self.settings.max_pending_security_events {
                self.pending_security.fetch_sub(1, Ordering::AcqRel);
                counter!(m::INGEST_DROPPED, "cause" => "security_backlog").increment(1);
                continue;
            }
            let payload = serde_json::to_vec(&event).unwrap_or_default();
            let mut pending = Pending::with_capacity(1);
            let sent = self.producer.enqueue(
                &self.settings.security_topic,
                Some(event.source_ip.as_bytes()),
                &payload,
                &mut pending,
            );
            let counter = Arc::clone(&self.pending_security);
            match (sent, pending.pop()) {
                (Ok(()), Some(delivery)) => {
                    tokio::spawn(async move {
                        if !matches!(delivery.await, Ok(Ok(_))) {
                            counter!(m::INGEST_DROPPED, "cause" => "security_undelivered")
                                .increment(1);
                        }
                        counter.fetch_sub(1, Ordering::AcqRel);
                    });
                }
                _ => {
                    counter.fetch_sub(1, Ordering::AcqRel);
                    counter!(m::INGEST_DROPPED, "cause" => "security_queue_full").increment(1);
                }
            }
        }
    }
}

/// One Meta app: its signature check and handshake token.
pub struct App {
    /// Empty for the default app.
    pub name: String,
    pub verifier: Verifier,
    pub verify_token: String,
}

impl State {
    /// The app a webhook path names: `/webhook` the default, `/webhook/<name>` a named one.
    fn app(&self, path: &str) -> Option<&App> {
        match path.strip_prefix("/webhook")? {
            "" => self.apps.first(),
            rest => {
                let name = rest.strip_prefix('/')?;
                self.apps
                    .iter()
                    .skip(1)
                    .find(|a| a.name == name && !name.is_empty())
            }
        }
    }
}

/// What a successfully handled request produced.
enum Outcome {
    Events(KindCounts),
    DeadLettered,
    Reply(Response<Full<Bytes>>),
}

/// The hyper service of one connection.
#[derive(Clone)]
pub struct Handler {
    state: Arc<State>,
    peer: SocketAddr,
}

impl Handler {
    pub fn new(state: Arc<State>, peer: SocketAddr) -> Self {
        Handler { state, peer }
    }

    async fn route(self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let start = Instant::now();
        let path = req.uri().path();
        let webhook = path == "/webhook" || path.starts_with("/webhook/");
        let (route, result) = match (req.method(), path) {
            (&Method::POST, _) if webhook => ("webhook", self.webhook(req).await),
            (&Method::GET, _) if webhook => ("handshake", self.handshake(&req)),
            (&Method::GET, "/metrics") if !self.state.settings.metrics_elsewhere => {
                ("metrics", Ok(self.metrics()))
            }
            (&Method::GET, "/healthz") => (
                "healthz",
                Ok(Outcome::Reply(ops::healthz(&self.state.health))),
            ),
            (&Method::GET, "/readyz") => ("readyz", self.ready().await),
            (_, "/healthz" | "/readyz") => ("other", Err(RequestError::MethodNotAllowed)),
            _ if webhook => ("other", Err(RequestError::MethodNotAllowed)),
            _ => ("other", Err(RequestError::NotFound)),
        };
        let hot = &self.state.hot;
        let (outcome, response) = match result {
            Ok(Outcome::Events(kinds)) => {
                kinds.record(&hot.events);
                ("ok", text(200, "ok"))
            }
            Ok(Outcome::DeadLettered) => ("dead_letter", text(200, "ok")),
            Ok(Outcome::Reply(r)) => ("ok", r),
            Err(e) => (e.code(), self.error_response(&e)),
        };
        if (route, outcome) == ("webhook", "ok") {
            hot.webhook_ok.increment(1);
        } else {
            counter!(m::INGEST_REQUESTS, "route" => route, "outcome" => outcome).increment(1);
        }
        if route == "webhook" {
            hot.webhook_seconds.record(start.elapsed());
        } else {
            histogram!(m::INGEST_REQUEST_SECONDS, "route" => route).record(start.elapsed());
        }
        response
    }

    fn error_response(&self, e: &RequestError) -> Response<Full<Bytes>> {
        let status = e.status();
        if status.is_server_error() {
            tracing::warn!(error = %e, peer = %self.peer.ip(), "request refused");
        } else {
            tracing::debug!(error = %e, peer = %self.peer.ip(), "request refused");
        }
        let mut r = text(status.as_u16(), e.code());
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(RETRY_AFTER, self.state.settings.retry_after_secs.into());
        }
        r
    }

    /// Meta's subscription check: echo `hub.challenge` when the token matches.
    fn handshake(&self, req: &Request<Incoming>) -> Result<Outcome, RequestError> {
        let app = self.app_of(req.uri().path(), "handshake", req.headers())?;
        let (mut mode, mut token, mut challenge) = (None, None, None);
        let query = req.uri().query().unwrap_or("");
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "hub.mode" => mode = Some(v),
                "hub.verify_token" => token = Some(v),
                "hub.challenge" => challenge = Some(v),
                _ => {}
            }
        }
        let expected = app.verify_token.as_bytes();
        let token_ok =
            token.is_some_and(|t| subtle::ConstantTimeEq::ct_eq(t.as_bytes(), expected).into());
        if mode.as_deref() != Some("subscribe") || !token_ok {
            self.record_security("bad_verify_token", "handshake", req.headers());
            return Err(RequestError::BadVerifyToken);
        }
        Ok(Outcome::Reply(text(200, &challenge.unwrap_or_default())))
    }

    /// Verify, parse, split, mask, produce, and wait for the broker's acks.
    async fn webhook(&self, req: Request<Incoming>) -> Result<Outcome, RequestError> {
        let app = self.app_of(req.uri().path(), "webhook", req.headers())?;
        let mut slot = self.state.admission.request()?;
        let settings = &self.state.settings;
        check_content_type(req.headers())?;
        let (parts, incoming) = req.into_parts();
        let mut body = read_body(
            &parts.headers,
            incoming,
            &mut slot,
            settings.max_body_bytes,
            settings.body_read_timeout,
        )
        .await?;
        let header = parts.headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes());
        if let Err(e) = app.verifier.verify(header, &body) {
            self.record_security(e.reason(), "webhook", &parts.headers);
            return Err(e.into());
        }
        let mut pending = Pending::new();
        let outcome = self.enqueue(&mut body, &mut pending)?;
        let started = Instant::now();
        Producer::settle(pending, started + settings.produce_timeout).await?;
        self.state.hot.produce_seconds.record(started.elapsed());
        Ok(outcome)
    }

    /// Parses the verified body and enqueues its events (one record per 64 KiB of them, see
    /// `model::record`), or, if it does not parse, its content-free skeleton on the
    /// dead-letter topic (Meta would retry it for days in vain; see `model::skeleton`).
    fn enqueue(&self, body: &mut [u8], pending: &mut Pending) -> Result<Outcome, RequestError> {
        let st = &self.state;
        let received_ms = now_ms();
        let body_len = body.len();
        // simd-json unescapes strings in place, so a body with escapes is no longer what Meta
        // sent once parsed: keep a copy for the rare dead letter, and only then.
        let original = memchr::memchr(b'\\', body).map(|_| body.to_vec());
        let hook = match parse::parse(body) {
            Ok(hook) => hook,
            Err(e) => {
                let raw: &[u8] = original.as_deref().unwrap_or(body);
                self.dead_letter(raw, &e, received_ms, pending)?;
                return Ok(Outcome::DeadLettered);
            }
        };
        let tenants = st.tenants.get();
        let ctx = SplitContext {
            pepper: &st.pepper,
            id_key: &st.id_key,
            received_ms,
            tenants: Some(&tenants),
        };
        let mut record = RecordWriter::for_body(st.settings.record_format, body_len);
        let mut kinds = KindCounts::default();
        let topic = &st.settings.events_topic;
        parse::split(&hook, &ctx, |event| {
            kinds.add(event.kind);
            if record.push(event) {
                st.producer.enqueue(topic, None, record.bytes(), pending)?;
                record.clear();
            }
            Ok::<_, RequestError>(())
        })?;
        if !record.is_empty() {
            st.producer.enqueue(topic, None, record.bytes(), pending)?;
        }
        Ok(Outcome::Events(kinds))
    }

    /// Enqueues the skeleton of a signed body that does not parse: its shape, size, SHA-256
    /// and the redacted reason, never its content.
    fn dead_letter(
        &self,
        raw: &[u8],
        error: &parse::ParseError,
        received_ms: u64,
        pending: &mut Pending,
    ) -> Result<(), RequestError> {
        let st = &self.state;
        let reason = skeleton::redact_reason(&error.to_string());
        tracing::info!(reason = %reason, bytes = raw.len(), "dead-lettering the skeleton of a signed body that does not parse");
        let record = skeleton::skeleton(raw, &reason, received_ms);
        let headers: [(&str, &[u8]); 2] = [
            (skeleton::HEADER_KIND, b"webhook-skeleton"),
            (skeleton::HEADER_ERROR, reason.as_bytes()),
        ];
        st.producer.enqueue_with_headers(
            &st.settings.dead_letter_topic,
            &record,
            &headers,
            pending,
        )?;
        counter!(m::INGEST_DEAD_LETTERS).increment(1);
        Ok(())
    }

    /// The app of a webhook path, or 404 (and a security event: a probe of the endpoint) for
    /// a name no app has.
    fn app_of(
        &self,
        path: &str,
        route: &'static str,
        headers: &HeaderMap,
    ) -> Result<&App, RequestError> {
        match self.state.app(path) {
            Some(app) => Ok(app),
            None => {
                self.record_security("unknown_app", route, headers);
                Err(RequestError::NotFound)
            }
        }
    }

    /// Counts a refused credential against its source (written as a security event at the
    /// end of the window: see `security`).
    fn record_security(&self, reason: &'static str, route: &'static str, headers: &HeaderMap) {
        counter!(m::INGEST_SIGNATURE_FAILURES, "reason" => reason).increment(1);
        let st = &self.state;
        let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        let source = source_ip(self.peer.ip(), forwarded, &st.settings.trusted_proxies);
        st.security.record(source, reason, route);
    }

    fn metrics(&self) -> Outcome {
        self.state.publish_gauges();
        Outcome::Reply(ops::metrics(&self.state.metrics))
    }

    async fn ready(&self) -> Result<Outcome, RequestError> {
        let st = &self.state;
        let topic = &st.settings.events_topic;
        match st.producer.reachable(topic, Duration::from_secs(2)).await {
            Reach::Up => Ok(Outcome::Reply(text(200, "ready"))),
            Reach::Down => Err(RequestError::NotReady),
            Reach::Refused(why) => Err(RequestError::BrokerRefused(why)),
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for Handler {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let handler = self.clone();
        Box::pin(async move { Ok(handler.route(req).await) })
    }
}

/// Events of one request by kind, counted once the broker acked them.
#[derive(Default)]
struct KindCounts([u64; EventKind::ALL.len()]);

impl KindCounts {
    fn add(&mut self, kind: EventKind) {
        self.0[kind.index()] += 1;
    }

    /// Adds the counts to `counters`, which hold one series per kind in [`EventKind::ALL`]
    /// order.
    fn record(&self, counters: &[metrics::Counter; EventKind::ALL.len()]) {
        for (counter, n) in counters.iter().zip(self.0) {
            if n > 0 {
                counter.increment(n);
            }
        }
    }
}

fn check_content_type(headers: &HeaderMap) -> Result<(), RequestError> {
    let ct = headers
        .get(CONTENT_TYPE)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let essence = ct.split(|b| *b == b';').next().unwrap_or_default();
    if essence
        .trim_ascii()
        .eq_ignore_ascii_case(b"application/json")
    {
        Ok(())
    } else {
        Err(RequestError::UnsupportedMediaType)
    }
}

/// Reads the body into one contiguous buffer (to verify and parse in place) under a size cap,
/// a deadline and the admission budget (see `limits`); hyper's chunks are released as they are
/// copied. The cap is checked on the bytes read, not only on Content-Length, since chunked
/// bodies declare none; a declared length makes room for the whole body before any is read.
async fn read_body(
    headers: &HeaderMap,
    mut incoming: Incoming,
    slot: &mut Slot<'_>,
    max: usize,
    timeout: Duration,
) -> Result<Vec<u8>, RequestError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(RequestError::TooLarge);
    }
    if let Some(n) = declared {
        slot.make_room(n)?;
    }
    let capacity = declared.map_or(16 * 1024, |n| n as usize);
    let mut body = Vec::with_capacity(capacity);
    let deadline = Instant::now() + timeout;
    loop {
        let frame = tokio::time::timeout_at(deadline, incoming.frame())
            .await
            .map_err(|_| RequestError::BodyTimeout)?;
        let Some(frame) = frame else { break };
        let Ok(data) = frame.map_err(RequestError::BodyRead)?.into_data() else {
            continue;
        };
        let len = body.len() + data.len();
        if len > max {
            return Err(RequestError::TooLarge);
        }
        slot.make_room(len as u64)?;
        body.extend_from_slice(&data);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_accepts_json_with_parameters_only() {
        let mut h = HeaderMap::new();
        assert!(check_content_type(&h).is_err());
        h.insert(
            CONTENT_TYPE,
            "Application/JSON; charset=utf-8".parse().expect("header"),
        );
        assert!(check_content_type(&h).is_ok());
        h.insert(CONTENT_TYPE, "text/plain".parse().expect("header"));
        assert!(check_content_type(&h).is_err());
    }
}
