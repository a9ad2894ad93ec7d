//! End-to-end timing: probe statuses whose first appearance in ClickHouse is watched.
//!
//! A probe's latency runs from its scheduled send to the first poll that finds its row in
//! `message_status`, so it includes ingest, the broker, the sink's batching and the insert.
//! The poll interval (20 ms) bounds the resolution. Rows hold the pseudonym of a message id,
//! not the id: probes are looked up by their pseudonyms under the pipeline's id key.

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Where the pipeline's rows land.
#[derive(Clone, Debug)]
pub struct ClickHouse {
    /// `http://host:8123`
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: String,
    /// The pipeline's id key (`BLUETICK_ID_KEY`).
    pub id_key: Vec<u8>,
}

pub struct Probes {
    id_key: Vec<u8>,
    /// Pseudonym → raw id of each probe sent.
    keys: Mutex<HashMap<String, String>>,
    sent: Mutex<HashMap<String, Instant>>,
    seen: Mutex<HashMap<String, Instant>>,
    done: tokio::sync::watch::Sender<bool>,
}

impl Probes {
    /// Starts polling ClickHouse for the rows of the probes sent.
    pub fn start(ch: ClickHouse) -> Arc<Probes> {
        let (done, mut stop) = tokio::sync::watch::channel(false);
        let probes = Arc::new(Probes {
            id_key: ch.id_key.clone(),
            keys: Mutex::default(),
            sent: Mutex::default(),
            seen: Mutex::default(),
            done,
        });
        let me = probes.clone();
        tokio::spawn(async move {
            let client: Client<_, Full<Bytes>> =
                Client::builder(TokioExecutor::new()).build(HttpConnector::new());
            while !*stop.borrow() {
                me.poll(&client, &ch).await;
                let _ = tokio::time::timeout(Duration::from_millis(20), stop.changed()).await;
            }
        });
        probes
    }

    /// Records that probe `id` was scheduled at `due` and answered 200.
    pub fn sent(&self, id: String, due: Instant) {
        if let Ok(mut keys) = self.keys.lock() {
            keys.insert(crate::traffic::pseudonym(&self.id_key, &id), id.clone());
        }
        if let Ok(mut sent) = self.sent.lock() {
            sent.insert(id, due);
        }
    }

    /// Waits up to `within` for every sent probe, stops polling, and returns the latency
    /// histogram (ms), probes seen, probes sent.
    pub async fn finish(&self, within: Duration) -> (Histogram<u64>, u64, u64) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline && self.missing() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.done.send(true);
        let mut h = Histogram::new_with_bounds(1, 3_600_000, 3).expect("valid bounds");
        let sent = self.sent.lock().map(|s| s.clone()).unwrap_or_default();
        let seen = self.seen.lock().map(|s| s.clone()).unwrap_or_default();
        let mut found = 0;
        for (id, due) in &sent {
            if let Some(at) = seen.get(id) {
                found += 1;
                let _ = h.record(at.saturating_duration_since(*due).as_millis().max(1) as u64);
            }
        }
        (h, found, sent.len() as u64)
    }

    fn missing(&self) -> usize {
        let (Ok(sent), Ok(seen)) = (self.sent.lock(), self.seen.lock()) else {
            return 0;
        };
        sent.keys().filter(|id| !seen.contains_key(*id)).count()
    }

    async fn poll(&self, client: &Client<HttpConnector, Full<Bytes>>, ch: &ClickHouse) {
        let waiting: Vec<String> = {
            let (Ok(keys), Ok(seen)) = (self.keys.lock(), self.seen.lock()) else {
                return;
            };
            keys.iter()
                .filter(|(_, id)| !seen.contains_key(*id))
                .map(|(k, _)| format!("'{k}'"))
                .collect()
        };
        if waiting.is_empty() {
            return;
        }
        let sql = format!(
            "SELECT DISTINCT message_id FROM message_status WHERE message_id IN ({}) FORMAT TSV",
            waiting.join(",")
        );
        let uri = format!(
            "{}/?database={}&user={}&password={}",
            ch.url.trim_end_matches('/'),
            ch.database,
            ch.user,
            ch.password
        );
        let Ok(req) = http::Request::post(uri).body(Full::new(Bytes::from(sql))) else {
            return;
        };
        let Ok(resp) = client.request(req).await else {
            return;
        };
        let Ok(body) = resp.into_body().collect().await else {
            return;
        };
        let now = Instant::now();
        let (Ok(keys), Ok(mut seen)) = (self.keys.lock(), self.seen.lock()) else {
            return;
        };
        for key in String::from_utf8_lossy(&body.to_bytes()).lines() {
            if let Some(id) = keys.get(key) {
                seen.entry(id.clone()).or_insert(now);
            }
        }
    }
}
