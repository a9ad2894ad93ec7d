//! The Kafka side of the sink: a consumer group member that never commits on its own. Offsets
//! are stored and committed only by [`Consumer::commit`], which the sink calls after a
//! batch's rows are in ClickHouse (at-least-once; ClickHouse deduplicates on the event id).
//!
//! While ClickHouse is down the sink pauses its partitions but keeps awaiting `recv`, which
//! keeps it alive in the group (librdkafka's `max.poll.interval.ms`) without fetching more.

use super::batch::Source;
use crate::config::{KafkaConfig, SinkConfig};
use crate::kafka::client_config;
use crate::metrics as m;
use rdkafka::consumer::{CommitMode, Consumer as _, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::BorrowedMessage;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// Publishes consumer lag per partition from librdkafka's statistics, and counts failed
/// commits.
pub struct Context;

impl ClientContext for Context {
    fn stats(&self, stats: Statistics) {
        let mut assigned = 0;
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                // Partition -1 is librdkafka's internal "unassigned" bucket; -1 lag means
                // unknown (not assigned here, or nothing committed yet).
                if *partition < 0 || !p.desired {
                    continue;
                }
                assigned += 1;
                if p.consumer_lag < 0 {
                    continue;
                }
                metrics::gauge!(m::SINK_CONSUMER_LAG, "topic" => topic.clone(), "partition" => partition.to_string())
                    .set(p.consumer_lag as f64);
            }
        }
        metrics::gauge!(m::SINK_ASSIGNED_PARTITIONS).set(f64::from(assigned));
    }
}

impl ConsumerContext for Context {}

pub struct Consumer {
    inner: StreamConsumer<Context>,
    events_topic: String,
    security_topic: String,
}

impl Consumer {
    /// Joins `sink.group_id` and subscribes to the events and security topics. A new group
    /// starts from the earliest offset, so nothing produced before the sink's first start is
    /// skipped.
    pub fn new(kafka: &KafkaConfig, sink: &SinkConfig) -> Result<Self, KafkaError> {
        let mut config =
            client_config(kafka).map_err(|e| KafkaError::ClientCreation(e.to_string()))?;
        if !sink.instance_id.is_empty() {
            config.set("group.instance.id", &sink.instance_id);
        }
        let inner: StreamConsumer<Context> = config
            .set("client.id", "bluetick-sink")
            .set("group.id", &sink.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "5000")
            .create_with_context(Context)?;
        inner.subscribe(&[&kafka.events_topic, &kafka.security_topic])?;
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
