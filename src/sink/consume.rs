//! The Kafka side of the sink: a consumer group member that never commits on its own. Offsets
//! are stored and committed only by [`Consumer::commit`], which the sink calls after a
//! batch's rows are in ClickHouse (at-least-once; ClickHouse deduplicates on the event id).
//!
//! While ClickHouse is down the sink pauses its partitions but keeps awaiting `recv`, which
//! keeps it alive in the group (librdkafka's `max.poll.interval.ms`) without fetching more.

use super::batch::Source;
use crate::config::{KafkaConfig, SinkConfig};
use crate::health::Watch;
use crate::kafka::client_config;
use crate::metrics as m;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::BorrowedMessage;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Publishes consumer lag per partition from librdkafka's statistics and beats the health
/// watch with them.
///
/// Invariant: this member reports lag only for partitions it owns. A partition handed to
/// another member (revoked in a rebalance, or no longer in the statistics) has its gauge set
/// to 0 here, so summing the lag over all sinks counts each partition once.
///
/// librdkafka counts lag from a committed offset and a high watermark it learnt by fetching:
/// a new group that has committed nothing, or a partition assigned while the sink is paused
/// (ClickHouse down), has none for as long as the outage lasts, which is when the backlog
/// grows. Those partitions are listed in `unknown` and measured from the broker by
/// [`fill_unknown_lag`].
pub struct Context {
    alive: Watch,
    reported: Mutex<BTreeSet<(String, i32)>>,
    unknown: Mutex<BTreeSet<(String, i32)>>,
}

impl Context {
    fn lag(topic: &str, partition: i32) -> metrics::Gauge {
        metrics::gauge!(m::SINK_CONSUMER_LAG, "topic" => topic.to_string(), "partition" => partition.to_string())
    }

    /// Zeroes the lag of partitions this member no longer owns, and forgets them.
    fn release(&self, gone: impl IntoIterator<Item = (String, i32)>) {
        let Ok(mut reported) = self.reported.lock() else {
            return;
        };
        let Ok(mut unknown) = self.unknown.lock() else {
            return;
        };
        for key in gone {
            unknown.remove(&key);
            if reported.remove(&key) {
                Self::lag(&key.0, key.1).set(0.0);
            }
        }
    }

    /// Sets the lag measured from the broker, unless librdkafka learnt it meanwhile or the
    /// partition moved to another member.
    fn fill(&self, key: &(String, i32), lag: i64) {
        if let Ok(unknown) = self.unknown.lock() {
            if unknown.contains(key) {
                Self::lag(&key.0, key.1).set(lag.max(0) as f64);
            }
        }
    }
}

impl ClientContext for Context {
    fn stats(&self, stats: Statistics) {
        self.alive.beat();
        let mut owned = BTreeSet::new();
        let mut unknown = BTreeSet::new();
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                // Partition -1 is librdkafka's internal "unassigned" bucket; -1 lag means
                // unknown (not assigned here, or nothing committed yet).
                if *partition < 0 || !p.desired {
                    continue;
                }
                owned.insert((topic.clone(), *partition));
                if p.consumer_lag >= 0 {
                    Self::lag(topic, *partition).set(p.consumer_lag as f64);
                } else {
                    unknown.insert((topic.clone(), *partition));
                }
            }
        }
        metrics::gauge!(m::SINK_ASSIGNED_PARTITIONS).set(owned.len() as f64);
        let gone: Vec<(String, i32)> = match self.reported.lock() {
            Ok(reported) => reported.difference(&owned).cloned().collect(),
            Err(_) => Vec::new(),
        };
        self.release(gone);
        if let Ok(mut reported) = self.reported.lock() {
            reported.extend(owned);
        }
        if let Ok(mut slot) = self.unknown.lock() {
            *slot = unknown;
        }
    }
}

/// How often partitions of unknown lag are measured from the broker while any of them lags
/// (librdkafka's statistics interval).
const LAG_FILL_INTERVAL: Duration = Duration::from_secs(5);

/// How often when none of them lagged at the last measure. A partition that has never been
/// written has nothing committed, so librdkafka never learns its lag: without this, a sink
/// would ask about its idle partitions every few seconds for as long as it runs.
const LAG_FILL_IDLE_INTERVAL: Duration = Duration::from_secs(60);

/// Measures, from the broker, the lag of owned partitions whose lag librdkafka does not know:
/// high watermark minus the group's committed offset (or minus the low watermark when
/// nothing is committed yet, as `auto.offset.reset=earliest` reads from there). Blocking:
/// runs on tokio's blocking pool, never on the runtime's threads. Returns the largest lag
/// measured.
fn fill_unknown_lag(consumer: &StreamConsumer<Context>) -> KafkaResult<i64> {
    const ASK: Duration = Duration::from_secs(2);
    let keys: Vec<(String, i32)> = match consumer.context().unknown.lock() {
        Ok(unknown) => unknown.iter().cloned().collect(),
        Err(_) => return Ok(0),
    };
    if keys.is_empty() {
        return Ok(0);
    }
    let mut tpl = TopicPartitionList::with_capacity(keys.len());
    for (topic, partition) in &keys {
        tpl.add_partition(topic, *partition);
    }
    let committed = consumer.committed_offsets(tpl, ASK)?;
    let mut largest = 0;
    for e in committed.elements() {
        let (low, high) = consumer.fetch_watermarks(e.topic(), e.partition(), ASK)?;
        let from = match e.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        let key = (e.topic().to_string(), e.partition());
        let lag = high - from;
        consumer.context().fill(&key, lag);
        largest = largest.max(lag);
    }
    Ok(largest)
}

/// Runs [`fill_unknown_lag`] every [`LAG_FILL_INTERVAL`], or [`LAG_FILL_IDLE_INTERVAL`] after
/// a measure found no lag, until the consumer is dropped.
fn spawn_lag_fill(consumer: Weak<StreamConsumer<Context>>) {
    tokio::spawn(async move {
        let mut pause = LAG_FILL_INTERVAL;
        loop {
            tokio::time::sleep(pause).await;
            pause = LAG_FILL_INTERVAL;
            let Some(c) = consumer.upgrade() else {
                return;
            };
            let idle = c.context().unknown.lock().map_or(true, |u| u.is_empty());
            if idle {
                continue;
            }
            match tokio::task::spawn_blocking(move || fill_unknown_lag(&c)).await {
                Ok(Ok(0)) => pause = LAG_FILL_IDLE_INTERVAL,
                Ok(Err(e)) => tracing::debug!(error = %e, "could not measure lag from the broker"),
                Ok(Ok(_)) | Err(_) => {}
            }
        }
    });
}

impl ConsumerContext for Context {
    /// Revoked partitions stop counting here at once, before the next statistics.
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.release(
                tpl.elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition())),
            );
        }
    }
}

pub struct Consumer {
    inner: Arc<StreamConsumer<Context>>,
    events_topic: String,
    security_topic: String,
}

impl Consumer {
    /// Joins `sink.group_id` and subscribes to the events and security topics. A new group
    /// starts from the earliest offset, so nothing produced before the sink's first start is
    /// skipped.
    ///
    /// `alive` is beaten by librdkafka's statistics (every 5 s), which arrive only while the
    /// sink keeps polling.
    pub fn new(kafka: &KafkaConfig, sink: &SinkConfig, alive: Watch) -> Result<Self, KafkaError> {
        let mut config =
            client_config(kafka).map_err(|e| KafkaError::ClientCreation(e.to_string()))?;
        if !sink.instance_id.is_empty() {
            config.set("group.instance.id", &sink.instance_id);
        }
        let inner: StreamConsumer<Context> = config
            .set("client.id", "bluetick-sink")
            .set("group.id", &sink.group_id)
            .set("session.timeout.ms", sink.session_timeout_ms.to_string())
            // Several heartbeats per session, so one slow reply never costs the membership.
            .set(
                "heartbeat.interval.ms",
                (sink.session_timeout_ms / 5).clamp(100, 3_000).to_string(),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "5000")
            .create_with_context(Context {
                alive: alive.clone(),
                reported: Mutex::default(),
                unknown: Mutex::default(),
            })?;
        alive.beat();
        inner.subscribe(&[&kafka.events_topic, &kafka.security_topic])?;
        let inner = Arc::new(inner);
        spawn_lag_fill(Arc::downgrade(&inner));
        Ok(Consumer {
            inner,
            events_topic: kafka.events_topic.clone(),
            security_topic: kafka.security_topic.clone(),
        })
    }

    pub async fn recv(&self) -> KafkaResult<BorrowedMessage<'_>> {
        self.inner.recv().await
    }

    /// Which subscribed topic `topic` is.
    pub fn source(&self, topic: &str) -> Option<Source> {
        if topic == self.events_topic {
            Some(Source::Events)
        } else if topic == self.security_topic {
            Some(Source::Security)
        } else {
            None
        }
    }

    pub fn topic(&self, source: Source) -> &str {
        match source {
            Source::Events => &self.events_topic,
            Source::Security => &self.security_topic,
        }
    }

    /// Commits `offsets` (next offset per partition) and waits for the broker's answer. A
    /// failure is counted and logged, not fatal: the records are delivered again and
    /// ClickHouse deduplicates them.
    pub fn commit(&self, offsets: &[(Source, i32, i64)]) {
        if offsets.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        for (source, partition, next) in offsets {
            let added =
                tpl.add_partition_offset(self.topic(*source), *partition, Offset::Offset(*next));
            if let Err(e) = added {
                tracing::warn!(error = %e, "bad offset in commit list");
            }
        }
        if let Err(e) = self.inner.commit(&tpl, CommitMode::Sync) {
            metrics::counter!(m::SINK_COMMIT_FAILURES).increment(1);
            tracing::warn!(error = %e, "offset commit failed; these records will be read again");
        }
    }

    /// Stops fetching for every assigned partition (records already received stay valid).
    pub fn pause(&self) {
        match self.inner.assignment() {
            Ok(tpl) if tpl.count() > 0 => {
                if let Err(e) = self.inner.pause(&tpl) {
                    tracing::warn!(error = %e, "could not pause partitions");
                }
            }
            _ => {}
        }
    }

    pub fn resume(&self) {
        if let Ok(tpl) = self.inner.assignment() {
            if let Err(e) = self.inner.resume(&tpl) {
                tracing::warn!(error = %e, "could not resume partitions");
            }
        }
    }
}
