//! Meta's side of the delivery contract: signed webhooks sent on a fixed schedule, every one
//! not answered 200 delivered again later (Meta retries for up to 7 days), and a record of
//! each attempt — when it left, when it was answered, with what — to compare with ClickHouse.

use crate::common::{inbound_body, key, sign, status_body, Status};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// One event a webhook carries, as ClickHouse will show it: (message id, status), with
/// `inbound` as the status of an inbound message.
pub type Key = (String, String);

/// A signed webhook and the events in it.
#[derive(Clone)]
pub struct Hook {
    pub body: Bytes,
    pub signature: String,
    pub events: Vec<Key>,
}

impl Hook {
    pub fn statuses(statuses: &[Status]) -> Hook {
        let body = status_body(statuses);
        Hook {
            signature: sign(&body),
            body: body.into(),
            events: statuses
                .iter()
                .map(|s| (key(&s.message_id), s.status.to_string()))
                .collect(),
        }
    }

    pub fn inbound(from: &[(String, String)], ts: u64) -> Hook {
        let body = inbound_body(from, ts);
        Hook {
            signature: sign(&body),
            body: body.into(),
            events: from
                .iter()
                .map(|(_, id)| (key(id), "inbound".to_string()))
                .collect(),
        }
    }
}

/// One delivery attempt of `hooks[hook]`; `status` is `None` for a connection error or timeout.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub hook: usize,
    pub sent: Instant,
    pub answered: Instant,
    pub status: Option<u16>,
}

pub struct Meta {
    client: Client<HttpConnector, Full<Bytes>>,
    url: String,
    timeout: Duration,
}

impl Meta {
    pub fn new(addr: SocketAddr) -> Meta {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Meta {
            client: Client::builder(TokioExecutor::new()).build(connector),
            url: format!("http://{addr}/webhook"),
            timeout: Duration::from_secs(10),
        }
    }

    async fn deliver(&self, hooks: &[Hook], index: usize) -> Attempt {
        let hook = &hooks[index];
        let sent = Instant::now();
        let request = http::Request::post(&self.url)
            .header("content-type", "application/json")
            .header("x-hub-signature-256", &hook.signature)
            .body(Full::new(hook.body.clone()))
            .expect("request");
        let status = tokio::time::timeout(self.timeout, async {
            let response = self.client.request(request).await.ok()?;
            let status = response.status().as_u16();
            response.into_body().collect().await.ok()?;
            Some(status)
        })
        .await
        .ok()
        .flatten();
        Attempt {
            hook: index,
            sent,
            answered: Instant::now(),
            status,
        }
    }

    /// Sends `order` (indexes into `hooks`, repeats allowed) at `rate` per second, at most
    /// `in_flight` at once, and waits for every answer.
    pub async fn burst(
        self: &Arc<Self>,
        hooks: &Arc<Vec<Hook>>,
        order: &[usize],
        rate: f64,
        in_flight: usize,
    ) -> Vec<Attempt> {
        let slots = Arc::new(Semaphore::new(in_flight));
        let start = Instant::now();
        let interval = Duration::from_secs_f64(1.0 / rate);
        let mut tasks = Vec::with_capacity(order.len());
        for (n, &index) in order.iter().enumerate() {
            tokio::time::sleep_until(start + interval.mul_f64(n as f64)).await;
            let permit = slots.clone().acquire_owned().await.expect("semaphore");
            let (meta, hooks) = (self.clone(), hooks.clone());
            tasks.push(tokio::spawn(async move {
                let attempt = meta.deliver(&hooks, index).await;
                drop(permit);
                attempt
            }));
        }
        let mut attempts = Vec::with_capacity(tasks.len());
        for task in tasks {
            attempts.push(task.await.expect("delivery task"));
        }
        attempts
    }

    /// Meta's retries: delivers every hook of `hooks` that no attempt in `so_far` got a 200
    /// for, again and again (one second apart), until each is 200'd or `within` passes.
    pub async fn redeliver(
        &self,
        hooks: &[Hook],
        so_far: &[Attempt],
        within: Duration,
    ) -> Vec<Attempt> {
        let done: HashSet<usize> = so_far
            .iter()
            .filter(|a| a.status == Some(200))
            .map(|a| a.hook)
            .collect();
        let mut pending: Vec<usize> = (0..hooks.len()).filter(|i| !done.contains(i)).collect();
        let deadline = Instant::now() + within;
        let mut attempts = Vec::new();
        while !pending.is_empty() && Instant::now() < deadline {
            let mut still = Vec::new();
            for index in pending {
                let attempt = self.deliver(hooks, index).await;
                if attempt.status != Some(200) {
                    still.push(index);
                }
                attempts.push(attempt);
            }
            pending = still;
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        attempts
    }
}

/// What the attempts add up to.
#[derive(Default, Debug)]
pub struct Tally {
    pub requests: usize,
    pub ok: usize,
    /// Answers other than 200 by code; `err` for connection errors and timeouts.
    pub other: BTreeMap<String, usize>,
    /// Distinct events in hooks answered 200 at least once.
    pub acked: HashSet<Key>,
}

pub fn tally(hooks: &[Hook], attempts: &[Attempt]) -> Tally {
    let mut t = Tally::default();
    for a in attempts {
        t.requests += 1;
        match a.status {
            Some(200) => {
                t.ok += 1;
                t.acked.extend(hooks[a.hook].events.iter().cloned());
            }
            Some(code) => *t.other.entry(code.to_string()).or_default() += 1,
            None => *t.other.entry("err".into()).or_default() += 1,
        }
    }
    t
}
