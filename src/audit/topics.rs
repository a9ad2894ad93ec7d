//! The Kafka side of the audit: every topic bluetick creates — its `retention.ms` against the
//! policy, and a read from the earliest offset (capped per partition) with the same value
//! checks as the tables.

use super::values::Findings;
use super::{AuditError, Coverage, Limits};
use crate::config::Config;
use crate::kafka::topics::{describe, specs};
use crate::kafka::{client_config, read, SetupError};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::message::Message;
use std::io::Write;
use std::time::Duration;

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
    let mut findings = Findings::default();
    let scan = read::scan(
        kafka,
        topic,
        |_| None,
        max,
        |m| {
            let place = format!("{topic}/{}", m.partition());
            let headers = read::headers(m);
            findings.record(
                &place,
                headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
                m.payload().unwrap_or_default(),
            );
        },
    )?;
    Ok((findings, scan.read, !scan.complete))
}
