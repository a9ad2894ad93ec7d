//! Prometheus metrics: names, help texts and the process-wide recorder behind `GET /metrics`.
//!
//! Names follow `bluetick_<component>_<noun>_<unit>`; labels come from small fixed sets
//! (route, outcome, reason, kind, cause), never ids or numbers. An event is counted when it
//! enters and when it lands, so loss is a subtraction.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

pub const INGEST_REQUESTS: &str = "bluetick_ingest_requests_total";
pub const INGEST_REQUEST_SECONDS: &str = "bluetick_ingest_request_duration_seconds";
pub const INGEST_SIGNATURE_FAILURES: &str = "bluetick_ingest_signature_failures_total";
pub const INGEST_EVENTS: &str = "bluetick_ingest_events_total";
pub const INGEST_PRODUCE_SECONDS: &str = "bluetick_ingest_produce_duration_seconds";
pub const INGEST_IN_FLIGHT: &str = "bluetick_ingest_in_flight_requests";
pub const INGEST_PRODUCER_QUEUE: &str = "bluetick_ingest_producer_queue_messages";
pub const INGEST_DEAD_LETTERS: &str = "bluetick_ingest_dead_letters_total";
pub const INGEST_DROPPED: &str = "bluetick_ingest_dropped_total";

/// Latency buckets (seconds) from 0.5 ms to 10 s: Meta's targets are 250 ms median, 1 s tail.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder once per process and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE.get_or_init(build).clone()
}

fn build() -> PrometheusHandle {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .unwrap_or_else(|_| PrometheusBuilder::new());
    let handle = match builder.install_recorder() {
        Ok(h) => h,
        // Another recorder is already global (an embedding program's): keep ours local so
        // /metrics still renders.
        Err(_) => PrometheusBuilder::new().build_recorder().handle(),
    };
    describe();
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(5));
            upkeep.run_upkeep();
        })
        .ok();
    handle
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(INGEST_REQUESTS, "HTTP requests by route and outcome.");
    describe_histogram!(
        INGEST_REQUEST_SECONDS,
        Unit::Seconds,
        "Request duration by route."
    );
    describe_counter!(INGEST_SIGNATURE_FAILURES, "Refused credentials, by reason.");
    describe_counter!(INGEST_EVENTS, "Events acked by the broker, by kind.");
    describe_histogram!(
        INGEST_PRODUCE_SECONDS,
        Unit::Seconds,
        "Time from enqueueing a request's events to the broker's ack of the last one."
    );
    describe_gauge!(INGEST_IN_FLIGHT, "Webhook requests in progress.");
    describe_gauge!(
        INGEST_PRODUCER_QUEUE,
        "Records queued in the producer, not yet acked."
    );
    describe_counter!(
        INGEST_DEAD_LETTERS,
        "Signed bodies that failed to parse, kept raw."
    );
    describe_counter!(INGEST_DROPPED, "Records not written, by cause.");
}
