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
pub const INGEST_BODY_BYTES: &str = "bluetick_ingest_large_body_bytes";
pub const INGEST_DEAD_LETTERS: &str = "bluetick_ingest_dead_letters_total";
pub const INGEST_DROPPED: &str = "bluetick_ingest_dropped_total";

pub const SINK_ROWS: &str = "bluetick_sink_rows_total";
pub const SINK_INSERT_SECONDS: &str = "bluetick_sink_insert_duration_seconds";
pub const SINK_BATCH_ROWS: &str = "bluetick_sink_batch_rows";
pub const SINK_BATCH_SECONDS: &str = "bluetick_sink_batch_duration_seconds";
pub const SINK_EVENT_DELAY_SECONDS: &str = "bluetick_sink_event_delay_seconds";
pub const SINK_CONSUMER_LAG: &str = "bluetick_sink_consumer_lag_messages";
pub const SINK_ASSIGNED_PARTITIONS: &str = "bluetick_sink_assigned_partitions";
pub const SINK_DEAD_LETTERS: &str = "bluetick_sink_dead_letters_total";
pub const SINK_EXPIRED: &str = "bluetick_sink_expired_rows_total";
pub const SINK_ERASED: &str = "bluetick_sink_erased_rows_total";
pub const SINK_RETRIES: &str = "bluetick_sink_retries_total";
pub const SINK_COMMIT_FAILURES: &str = "bluetick_sink_commit_failures_total";
pub const SINK_CONSUME_ERRORS: &str = "bluetick_sink_consume_errors_total";
pub const SINK_ROLLUP_DAYS: &str = "bluetick_sink_rollup_days_total";
pub const SINK_ROLLUP_SECONDS: &str = "bluetick_sink_rollup_duration_seconds";
pub const SINK_ROLLUP_FAILURES: &str = "bluetick_sink_rollup_failures_total";

pub const AUDIT_FINDINGS: &str = "bluetick_audit_findings";
pub const AUDIT_LAST_RUN: &str = "bluetick_audit_last_run_timestamp_seconds";

/// Pushed by the short-lived commands (see `crate::pushgateway`): last run, last success,
/// last run failed, last run duration.
pub const MIGRATE_JOB: [&str; 4] = job_names!("migrate");
pub const RETENTION_JOB: [&str; 4] = job_names!("retention");
pub const ERASE_JOB: [&str; 4] = job_names!("erase");
pub const EXPORT_JOB: [&str; 4] = job_names!("export");
pub const RETENTION_PARTITIONS_DROPPED: &str = "bluetick_retention_partitions_dropped";
pub const ERASE_ROWS_REMOVED: &str = "bluetick_erase_rows_removed";
pub const EXPORT_ROWS: &str = "bluetick_export_rows";

macro_rules! job_names {
    ($job:literal) => {
        [
            concat!("bluetick_", $job, "_last_run_timestamp_seconds"),
            concat!("bluetick_", $job, "_last_success_timestamp_seconds"),
            concat!("bluetick_", $job, "_last_run_failed"),
            concat!("bluetick_", $job, "_last_run_duration_seconds"),
        ]
    };
}
use job_names;

/// Every metric bluetick exports (the pushed ones in [`PUSHED`]); deploy files (alerts, dashboards) are checked against it.
pub const NAMES: &[&str] = &[
    INGEST_REQUESTS,
    INGEST_REQUEST_SECONDS,
    INGEST_SIGNATURE_FAILURES,
    INGEST_EVENTS,
    INGEST_PRODUCE_SECONDS,
    INGEST_IN_FLIGHT,
    INGEST_PRODUCER_QUEUE,
    INGEST_BODY_BYTES,
    INGEST_DEAD_LETTERS,
    INGEST_DROPPED,
    SINK_ROWS,
    SINK_INSERT_SECONDS,
    SINK_BATCH_ROWS,
    SINK_BATCH_SECONDS,
    SINK_EVENT_DELAY_SECONDS,
    SINK_CONSUMER_LAG,
    SINK_ASSIGNED_PARTITIONS,
    SINK_DEAD_LETTERS,
    SINK_EXPIRED,
    SINK_ERASED,
    SINK_RETRIES,
    SINK_COMMIT_FAILURES,
    SINK_CONSUME_ERRORS,
    SINK_ROLLUP_DAYS,
    SINK_ROLLUP_SECONDS,
    SINK_ROLLUP_FAILURES,
    AUDIT_FINDINGS,
    AUDIT_LAST_RUN,
];

/// Every metric the short-lived commands push.
pub const PUSHED: &[&str] = &[
    MIGRATE_JOB[0],
    MIGRATE_JOB[1],
    MIGRATE_JOB[2],
    MIGRATE_JOB[3],
    RETENTION_JOB[0],
    RETENTION_JOB[1],
    RETENTION_JOB[2],
    RETENTION_JOB[3],
    ERASE_JOB[0],
    ERASE_JOB[1],
    ERASE_JOB[2],
    ERASE_JOB[3],
    EXPORT_JOB[0],
    EXPORT_JOB[1],
    EXPORT_JOB[2],
    EXPORT_JOB[3],
    RETENTION_PARTITIONS_DROPPED,
    ERASE_ROWS_REMOVED,
    EXPORT_ROWS,
];

/// Latency buckets (seconds) from 0.5 ms to 10 s: Meta's targets are 250 ms median, 1 s tail.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Batch size buckets (records): from single records to well past the default 50k cap.
const ROWS_BUCKETS: &[f64] = &[
    1.0, 10.0, 100.0, 1_000.0, 5_000.0, 10_000.0, 25_000.0, 50_000.0, 100_000.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder once per process and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE.get_or_init(build).clone()
}

fn build() -> PrometheusHandle {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_rows".into()), ROWS_BUCKETS))
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
    describe_gauge!(
        INGEST_BODY_BYTES,
        "Bytes of bodies larger than ingest.small_body_bytes held now (bounded by body_bytes_in_flight_mib)."
    );
    describe_counter!(
        INGEST_DEAD_LETTERS,
        "Signed bodies that failed to parse, kept raw."
    );
    describe_counter!(INGEST_DROPPED, "Records not written, by cause.");

    describe_counter!(SINK_ROWS, "Rows inserted into ClickHouse, by table.");
    describe_histogram!(
        SINK_INSERT_SECONDS,
        Unit::Seconds,
        "Time to insert one batch's rows into a table, retries included."
    );
    describe_histogram!(SINK_BATCH_ROWS, "Kafka records per batch.");
    describe_histogram!(
        SINK_BATCH_SECONDS,
        Unit::Seconds,
        "Time to store a batch: decode, inserts, dead letters, commit."
    );
    describe_histogram!(
        SINK_EVENT_DELAY_SECONDS,
        Unit::Seconds,
        "From the webhook's arrival at ingest to its row's insert: how stale dashboards are."
    );
    describe_gauge!(
        SINK_CONSUMER_LAG,
        "Records in a partition after the committed offset."
    );
    describe_gauge!(
        SINK_ASSIGNED_PARTITIONS,
        "Partitions this sink holds; 0 on a replica beyond the partition count."
    );
    describe_counter!(
        SINK_DEAD_LETTERS,
        "Records sent to the dead-letter topic (undecodable, or refused by ClickHouse)."
    );
    describe_counter!(
        SINK_EXPIRED,
        "Rows not written because they were already past their table's retention."
    );
    describe_counter!(
        SINK_ERASED,
        "Events not written because their person was erased after them (bluetick erase)."
    );
    describe_counter!(SINK_RETRIES, "Failed attempts that were retried, by step.");
    describe_counter!(
        SINK_COMMIT_FAILURES,
        "Offset commits the broker refused (the records are read again)."
    );
    describe_counter!(SINK_CONSUME_ERRORS, "Errors reported by the consumer.");
    describe_counter!(
        SINK_ROLLUP_DAYS,
        "Table days whose daily aggregates were recounted."
    );
    describe_histogram!(
        SINK_ROLLUP_SECONDS,
        Unit::Seconds,
        "Time to recount the daily aggregates of the days written since the last rollup."
    );
    describe_counter!(
        SINK_ROLLUP_FAILURES,
        "Rollups that failed (their days are tried again at the next one)."
    );

    describe_gauge!(
        AUDIT_FINDINGS,
        "Places where the privacy promise does not hold, by check, as of the last audit."
    );
    describe_gauge!(
        AUDIT_LAST_RUN,
        "When the last audit finished (Unix seconds)."
    );
}
