//! The Kafka side of the audit: every topic bluetick creates — its `retention.ms` against the
//! policy, and a read from the earliest offset (capped per partition) with the same value
//! checks as the tables.

use super::values::Findings;
use super::{AuditError, Coverage, Limits};
use crate::config::Config;
use crate::kafka::topics::{describe, specs};
use crate::kafka::{client_config, SetupError};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::io::Write;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(15);

pub async fn audit(
    cfg: &Config,
    limits: Limits,
    findings: &mut Findings,
    coverage: &mut Vec<Coverage>,
    progress: &mut dyn Write,
) -> Result<(), AuditError> {
    let admin: AdminClient<DefaultClientContext> = client_config(&cfg.kafka)?
        .create()
        .map_err(SetupError::from)?;
    for spec in specs(&cfg.kafka) {
        let want = spec
            .configs
            .iter()
            .find(|(k, _)| *k == "retention.ms")
            .and_then(|(_, v)| v.parse::<i64>().ok())
            .unwrap_or(i64::MAX);
        let configs = describe(&admin, &spec.name, TIMEOUT).await?;
        let have = configs
            .iter()
            .find(|(k, _)| k == "retention.ms")
            .and_then(|(_, v)| v.parse::<i64>().ok());
        match have {
            Some(ms) if ms >= 0 && ms <= want => {}
            other => findings.add(
                "topic_retention",
                &spec.name,
                format!(
                    "retention.ms {} where the policy is {want}; run `bluetick migrate`",
                    other.map_or("unset (the broker's default)".to_string(), |v| v
                        .to_string())
                ),
            ),
        }
        let kafka = cfg.kafka.clone();
        let topic = spec.name.clone();
        let max = limits.max_records;
        let (found, read, capped) =
            tokio::task::spawn_blocking(move || read_topic(&kafka, &topic, max))
                .await
                .map_err(|e| {
                    SetupError::Client(rdkafka::error::KafkaError::ClientCreation(e.to_string()))
                })??;
        findings.merge(found);
        writeln!(progress, "  {}: {read} records read", spec.name)?;
        coverage.push(Coverage {
            what: format!("topic {}", spec.name),
            scanned: read,
            unit: "records",
            capped,
        });
    }
    Ok(())
}

/// Reads `topic` from the earliest offset, up to `max` records per partition.
fn read_topic(
    kafka: &crate::config::KafkaConfig,
    topic: &str,
    max: u64,
) -> Result<(Findings, u64, bool), SetupError> {
    let consumer: BaseConsumer = client_config(kafka)?
        .set("group.id", "bluetick-audit")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()?;
    let meta = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    let mut tpl = TopicPartitionList::new();
    let mut want = 0u64;
    let mut capped = false;
    let mut ends = std::collections::HashMap::new();
    for p in meta.topics().iter().flat_map(|t| t.partitions()) {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), TIMEOUT)?;
        let n = (high - low).max(0) as u64;
        capped |= n > max;
        let end = low + n.min(max) as i64;
        if end > low {
            want += (end - low) as u64;
            ends.insert(p.id(), end);
            tpl.add_partition_offset(topic, p.id(), Offset::Offset(low))?;
        }
    }
    let mut findings = Findings::default();
    if want == 0 {
        return Ok((findings, 0, false));
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut read = 0u64;
    while read < want && Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        if ends
            .get(&m.partition())
            .is_some_and(|end| m.offset() >= *end)
        {
            continue;
        }
        read += 1;
        let place = format!("{topic}/{}", m.partition());
        let headers: Vec<(String, Vec<u8>)> = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| (x.key.to_string(), x.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        findings.record(
            &place,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            m.payload().unwrap_or_default(),
        );
    }
    Ok((findings, read, capped || read < want))
}
