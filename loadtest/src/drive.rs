//! The open-loop driver: requests leave on a fixed schedule, whatever the server does.
//!
//! Invariant: a request's latency is measured from the moment the schedule says it should have
//! left, not from when it actually did, so a slow server cannot hide its queueing by slowing the
//! generator down (no coordinated omission). Concurrency is capped by `connections`; a request
//! waiting for a free connection is still on the clock.

use crate::probe::Probes;
use crate::traffic::{Counts, Request, Traffic};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

/// How much traffic, where to, for how long.
#[derive(Clone, Debug)]
pub struct Plan {
    /// `http://host:port/webhook`.
    pub url: http::Uri,
    /// Requests per second.
    pub rate: f64,
    pub duration: Duration,
    /// Stop scheduling after this many requests even if time remains.
    pub max_requests: u64,
    /// Requests in flight at most (= connections opened at most).
    pub connections: usize,
    /// A request unanswered after this long counts as timed out.
    pub timeout: Duration,
    /// Probe requests spread over the run (0 = none); needs `Probes`.
    pub probes: u64,
}

/// What one run measured.
#[derive(Debug)]
pub struct Report {
    pub target_rate: f64,
    pub elapsed: Duration,
    pub sent: u64,
    pub ok: u64,
    pub events_ok: u64,
    /// Answers other than 200, by status code.
    pub refused: BTreeMap<u16, u64>,
    /// Connection errors and timeouts.
    pub failed: u64,
    /// Microseconds from scheduled send to full answer, every answered request.
    pub latency: Histogram<u64>,
    /// Milliseconds from a probe's scheduled send to its row being queryable.
    pub end_to_end: Option<(Histogram<u64>, u64, u64)>,
    /// Distinct events sent.
    pub distinct: Counts,
}

impl Report {
    pub fn achieved_rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn events_rate(&self) -> f64 {
        self.events_ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Latency at quantile `q` in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn not_ok(&self) -> u64 {
        self.sent - self.ok
    }
}

struct Outcome {
    status: Option<u16>,
    micros: u64,
    events: u32,
}

/// Sends `plan`'s traffic and waits for every answer (or `plan.timeout`).
pub async fn drive(plan: &Plan, mut traffic: Traffic, probes: Option<Arc<Probes>>) -> Report {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(plan.connections)
        .build(connector);
    let slots = Arc::new(Semaphore::new(plan.connections));
    let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
    let every_probe = match (plan.probes, &probes) {
        (0, _) | (_, None) => u64::MAX,
        (n, Some(_)) => ((plan.rate * plan.duration.as_secs_f64()) as u64 / n).max(1),
    };

    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / plan.rate.max(1e-3));
    let mut sent = 0u64;
    while sent < plan.max_requests {
        let due = start + interval.mul_f64(sent as f64);
        if due >= start + plan.duration {
            break;
        }
        tokio::time::sleep_until(due).await;
        let is_probe = sent % every_probe == every_probe / 2;
        let request = if is_probe {
            traffic.probe()
        } else {
            traffic.next_request()
        };
        let job = Job {
            client: client.clone(),
            url: plan.url.clone(),
            slots: slots.clone(),
            timeout: plan.timeout,
            due,
            probes: probes.clone().filter(|_| is_probe),
        };
        tokio::spawn(job.send(request, tx.clone()));
        sent += 1;
    }
    let elapsed = start.elapsed();
    drop(tx);

    let mut report = Report {
        target_rate: plan.rate,
        elapsed,
        sent,
        ok: 0,
        events_ok: 0,
        refused: BTreeMap::new(),
        failed: 0,
        latency: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
        end_to_end: None,
        distinct: traffic.counts(),
    };
    while let Some(o) = rx.recv().await {
        match o.status {
            Some(200) => {
                report.ok += 1;
                report.events_ok += u64::from(o.events);
            }
            Some(code) => *report.refused.entry(code).or_default() += 1,
            None => report.failed += 1,
        }
        if o.status.is_some() {
            let _ = report.latency.record(o.micros.max(1));
        }
    }
    if let Some(p) = probes.filter(|_| plan.probes > 0) {
        report.end_to_end = Some(p.finish(Duration::from_secs(30)).await);
    }
    report
}

struct Job {
    client: Client<HttpConnector, Full<Bytes>>,
    url: http::Uri,
    slots: Arc<Semaphore>,
    timeout: Duration,
    due: Instant,
    probes: Option<Arc<Probes>>,
}

impl Job {
    async fn send(self, request: Request, tx: mpsc::UnboundedSender<Outcome>) {
        let events = request.events;
        let probe_id = request.probe_id.clone();
        let answer = tokio::time::timeout_at(self.due + self.timeout, async {
            let _slot = self.slots.acquire().await.ok()?;
            let req = http::Request::post(self.url.clone())
                .header("content-type", "application/json")
                .header("x-hub-signature-256", &request.signature)
                .body(Full::new(request.body))
                .ok()?;
            let response = self.client.request(req).await.ok()?;
            let status = response.status().as_u16();
            response.into_body().collect().await.ok()?;
            Some(status)
        })
        .await
        .ok()
        .flatten();
        let micros = self.due.elapsed().as_micros() as u64;
        if let (Some(200), Some(p), Some(id)) = (answer, &self.probes, probe_id) {
            p.sent(id, self.due);
        }
        let _ = tx.send(Outcome {
            status: answer,
            micros,
            events,
        });
    }
}
