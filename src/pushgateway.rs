//! Outcomes of the short-lived commands (migrate, retention, erase, export), pushed to a
//! Prometheus Pushgateway: a job that has exited cannot be scraped, and "retention has not
//! succeeded for two days" is an alert only if its last success is recorded somewhere.
//!
//! Each run POSTs its group (`job="bluetick_<job>"`). A POST replaces only the metrics it
//! carries, so a failed run, which sends no `last_success`, keeps the previous success time:
//! the alert measures the age of the last success, not of the last attempt.

use crate::metrics as m;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long one push may take; a Pushgateway that does not answer never holds a job up.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("pushgateway URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("pushing to {url}: {reason}")]
    Send { url: String, reason: String },
    #[error("pushgateway at {url} answered {status}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
}

/// A command whose runs are pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Migrate,
    Retention,
    Erase,
    Export,
}

impl Job {
    pub fn name(self) -> &'static str {
        match self {
            Job::Migrate => "migrate",
            Job::Retention => "retention",
            Job::Erase => "erase",
            Job::Export => "export",
        }
    }

    /// (last run, last success, last run failed, duration) metric names of this job.
    fn names(self) -> [&'static str; 4] {
        match self {
            Job::Migrate => m::MIGRATE_JOB,
            Job::Retention => m::RETENTION_JOB,
            Job::Erase => m::ERASE_JOB,
            Job::Export => m::EXPORT_JOB,
        }
    }
}

/// One run: when, how long, whether it succeeded, and what it did (job-specific gauges).
#[derive(Debug, Clone)]
pub struct Run {
    pub job: Job,
    pub started: SystemTime,
    pub duration: Duration,
    pub ok: bool,
    /// (metric name from [`crate::metrics`], help, value); sent on success only.
    pub values: Vec<(&'static str, &'static str, f64)>,
}

impl Run {
    /// The Prometheus text format of this run.
    pub fn render(&self) -> String {
        let [last_run, last_success, failed, duration] = self.job.names();
        let at = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0)
        };
        let finished = self.started + self.duration;
        let mut gauges = vec![
            (
                last_run,
                "When the last run finished (Unix seconds).",
                at(finished),
            ),
            (
                failed,
                "1 if the last run failed.",
                f64::from(u8::from(!self.ok)),
            ),
            (
                duration,
                "How long the last run took.",
                self.duration.as_secs_f64(),
            ),
        ];
        if self.ok {
            gauges.push((
                last_success,
                "When the last successful run finished (Unix seconds).",
                at(finished),
            ));
            gauges.extend(self.values.iter().copied());
        }
        let mut text = String::new();
        for (name, help, value) in gauges {
            let _ = write!(
                text,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
            );
        }
        text
    }
}

/// Pushes `run` to the Pushgateway at `url` (`http://host:port` or `https://…`).
pub async fn push(url: &str, run: &Run) -> Result<(), PushError> {
    let target = format!(
        "{}/metrics/job/bluetick_{}",
        url.trim_end_matches('/'),
        run.job.name()
    );
    let uri: http::Uri = target
        .parse()
        .map_err(|e: http::uri::InvalidUri| PushError::Url {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    let request = http::Request::post(uri)
        .header(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")
        .body(Full::new(Bytes::from(run.render())))
        .map_err(|e| PushError::Url {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    let send_error = |reason: String| PushError::Send {
        url: url.to_string(),
        reason,
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .map_err(|e| send_error(e.to_string()))?
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<Bytes>>(https);
    let response = tokio::time::timeout(TIMEOUT, client.request(request))
        .await
        .map_err(|_| send_error(format!("no answer within {} s", TIMEOUT.as_secs())))?
        .map_err(|e| send_error(e.to_string()))?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| {
            String::from_utf8_lossy(&b.to_bytes())
                .chars()
                .take(200)
                .collect()
        })
        .unwrap_or_default();
    Err(PushError::Refused {
        url: url.to_string(),
        status,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ok: bool) -> Run {
        Run {
            job: Job::Retention,
            started: UNIX_EPOCH + Duration::from_secs(1_750_000_000),
            duration: Duration::from_millis(1_500),
            ok,
            values: vec![(m::RETENTION_PARTITIONS_DROPPED, "Partitions dropped.", 3.0)],
        }
    }

    #[test]
    fn a_success_carries_its_time_and_what_it_did() {
        let text = run(true).render();
        assert!(
            text.contains("bluetick_retention_last_success_timestamp_seconds 1750000001.5\n"),
            "{text}"
        );
        assert!(
            text.contains("bluetick_retention_last_run_failed 0\n"),
            "{text}"
        );
        assert!(
            text.contains("bluetick_retention_partitions_dropped 3\n"),
            "{text}"
        );
    }

    #[test]
    fn a_failure_leaves_the_last_success_alone() {
        let text = run(false).render();
        assert!(
            text.contains("bluetick_retention_last_run_failed 1\n"),
            "{text}"
        );
        assert!(!text.contains("last_success"), "{text}");
        assert!(!text.contains("partitions_dropped"), "{text}");
    }
}
