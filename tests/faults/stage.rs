//! One scenario's pipeline: fresh topics, database and consumer group on the broker and
//! ClickHouse it is given; ingest and sink as `bluetick` processes it can start and kill; and
//! the count of what ClickHouse holds, per event, after deduplication.

use crate::common::procs::{free_port, scratch_dir, Bluetick};
use crate::common::{ch_text, config, migrate, sink_config};
use crate::meta::{Hook, Key, Tally};
use crate::Row;
use bluetick::config::Config;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Stage {
    pub cfg: Config,
    pub dir: PathBuf,
    pub ingest_addr: SocketAddr,
    sink_addr: SocketAddr,
}

impl Stage {
    pub async fn new(name: &str, brokers: &str, clickhouse_url: &str) -> Stage {
        let mut cfg = config();
        sink_config(&mut cfg);
        cfg.kafka.brokers = brokers.to_string();
        cfg.clickhouse.url = clickhouse_url.to_string();
        // Answer 503 soon when the broker is gone; Meta's retry does the rest.
        cfg.ingest.produce_timeout_ms = 1_500;
        // Static membership: a sink restarted after kill -9 gets its partitions back at once
        // instead of waiting for the broker to notice the dead member.
        cfg.sink.instance_id = "sink-0".to_string();
        let ingest_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let sink_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        cfg.ingest.listen = ingest_addr.to_string();
        cfg.sink.listen = sink_addr.to_string();
        migrate(&cfg).await;
        Stage {
            cfg,
            dir: scratch_dir(&format!("bluetick-faults-{name}")),
            ingest_addr,
            sink_addr,
        }
    }

    pub fn ingest(&self) -> Bluetick {
        Bluetick::start(
            &self.cfg,
            "ingest",
            &self.dir,
            &self.ingest_addr.to_string(),
        )
    }

    pub fn sink(&self) -> Bluetick {
        Bluetick::start(&self.cfg, "sink", &self.dir, &self.sink_addr.to_string())
    }

    /// Rows per event after deduplication (`FINAL`), and rows before it.
    pub async fn holdings(&self) -> Holdings {
        let sql = "SELECT message_id, status, count() FROM message_status FINAL \
                   GROUP BY message_id, status \
                   UNION ALL SELECT message_id, 'inbound', count() FROM inbound_message FINAL \
                   GROUP BY message_id FORMAT TSV";
        let mut rows = HashMap::new();
        for line in ch_text(&self.cfg, sql).await.lines() {
            let mut cols = line.split('\t');
            let (Some(id), Some(status), Some(n)) = (cols.next(), cols.next(), cols.next()) else {
                continue;
            };
            let n: usize = n.parse().expect("count");
            *rows
                .entry((id.to_string(), status.to_string()))
                .or_insert(0) += n;
        }
        let raw = ch_text(
            &self.cfg,
            "SELECT (SELECT count() FROM message_status) + (SELECT count() FROM inbound_message)",
        )
        .await;
        Holdings {
            rows,
            raw: raw.trim().parse().expect("raw count"),
        }
    }

    /// Polls until ClickHouse holds every event of `expected` (or `within` passes), then a
    /// little longer so that late duplicates would show too.
    pub async fn settle(&self, expected: &HashSet<Key>, within: Duration) -> Holdings {
        let deadline = Instant::now() + within;
        loop {
            let h = self.holdings().await;
            let all = expected.iter().all(|k| h.rows.contains_key(k));
            if all || Instant::now() >= deadline {
                tokio::time::sleep(Duration::from_secs(2)).await;
                return self.holdings().await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Leaves nothing behind but the logs of a failed run.
    pub async fn finish(self, row: &Row) {
        if row.failures.is_empty() && row.lost == 0 && row.duplicated == 0 {
            crate::common::drop_database(&self.cfg).await;
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("{}: logs kept in {}", row.scenario, self.dir.display());
        }
    }
}

pub struct Holdings {
    /// Rows per (message id, status) after `FINAL`.
    pub rows: HashMap<Key, usize>,
    /// Rows before deduplication.
    pub raw: usize,
}

/// Fills the counting columns of `row`: what was 200'd against what is held.
pub fn score(row: &mut Row, hooks: &[Hook], tally: &Tally, held: &Holdings) {
    row.requests = tally.requests;
    row.ok = tally.ok;
    row.other = tally
        .other
        .iter()
        .map(|(code, n)| format!("{code}×{n}"))
        .collect::<Vec<_>>()
        .join(" ");
    row.acked = tally.acked.len();
    row.found = tally
        .acked
        .iter()
        .filter(|k| held.rows.contains_key(*k))
        .count();
    row.lost = row.acked - row.found;
    row.duplicated = held.rows.values().map(|n| n.saturating_sub(1)).sum();
    let kept: usize = held.rows.values().sum();
    row.replayed = held.raw.saturating_sub(kept);
    let sent: HashSet<&Key> = hooks.iter().flat_map(|h| h.events.iter()).collect();
    let strays = held.rows.keys().filter(|k| !sent.contains(k)).count();
    row.check(strays == 0, format!("{strays} rows of events never sent"));
}
