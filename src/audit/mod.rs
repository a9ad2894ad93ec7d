//! `bluetick audit`: the pipeline checks its own privacy promise on the live data, so that a
//! regression, a misconfigured topic or a hand-run INSERT is found by the product and not by
//! a regulator.
//!
//! It reads what bluetick keeps — every string column of every table ([`store`]), every topic
//! it creates ([`topics`]), its own configuration — and reports every place a promise does not
//! hold: a phone number, an id that decodes to one, a user id, content where a code belongs,
//! rows past retention, rows of people erased after them, a topic kept longer than the policy,
//! a placeholder secret. Each value check is [`values::Findings`]; a finding names the check,
//! the place (`table.column`, `topic/partition`), how many, and a masked sample.
//!
//! Invariant: a finding never prints what it found in clear — numbers are masked, ids cut.

pub mod store;
pub mod topics;
pub mod values;

use crate::clickhouse::ClickHouseError;
use crate::config::{weakness, Config, Secret};
use crate::metrics as m;
use serde::Serialize;
use std::io::Write;
use values::Findings;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    ClickHouse(#[from] ClickHouseError),
    #[error("kafka: {0}")]
    Kafka(#[from] crate::kafka::SetupError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("writing the report: {0}")]
    Io(#[from] std::io::Error),
}

/// How much is read.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Rows read per table; a larger table is sampled (its newest partitions first), and the
    /// report says so.
    pub max_rows: u64,
    /// Records read per topic partition, from the earliest offset.
    pub max_records: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_rows: 1_000_000,
            max_records: 10_000,
        }
    }
}

/// One place where a promise does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The check, a stable name (see [`CHECKS`]).
    pub check: &'static str,
    /// `table.column`, `table`, `topic`, `topic/partition`, or a config key.
    pub place: String,
    pub count: u64,
    /// The first value found, masked.
    pub sample: String,
}

/// What one check looked at, found or not: the report's lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coverage {
    pub what: String,
    pub scanned: u64,
    /// What `scanned` counts: `rows`, `records`, `partitions`.
    pub unit: &'static str,
    /// Set when the scan stopped at a cap.
    pub capped: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub coverage: Vec<Coverage>,
}

/// Every check, in report order, with what it means.
pub const CHECKS: &[(&str, &str)] = &[
    (
        "phone_number",
        "a digit run shaped like a phone number, outside the masked form",
    ),
    (
        "id_decodes_to_number",
        "a value (base64 or hex, e.g. a raw wamid) that decodes to a phone number",
    ),
    (
        "user_id",
        "a business-scoped user id in clear (kept only as a keyed hash)",
    ),
    (
        "content_length",
        "text longer than the column's purpose allows: content where a code, enum or hash belongs",
    ),
    ("past_retention", "rows older than their table's retention"),
    (
        "erased_person",
        "rows of a person an erasure record says was erased after them",
    ),
    (
        "topic_retention",
        "a topic kept longer than the policy (retention.ms)",
    ),
    (
        "weak_secret",
        "a placeholder or weak secret in the configuration",
    ),
];

impl Report {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// Findings per check, every check listed (0 where none), for metrics.
    pub fn per_check(&self) -> Vec<(&'static str, u64)> {
        CHECKS
            .iter()
            .map(|(c, _)| {
                let n = self
                    .findings
                    .iter()
                    .filter(|f| f.check == *c)
                    .map(|f| f.count)
                    .sum();
                (*c, n)
            })
            .collect()
    }

    /// A line per check and per finding.
    pub fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        for c in &self.coverage {
            let cap = if c.capped { " (capped: a sample)" } else { "" };
            writeln!(out, "checked {}: {} {}{cap}", c.what, c.scanned, c.unit)?;
        }
        for (check, n) in self.per_check() {
            writeln!(out, "{:<22} {n}", check)?;
        }
        for f in &self.findings {
            writeln!(
                out,
                "FINDING {} at {}: {} × e.g. {}",
                f.check, f.place, f.count, f.sample
            )?;
        }
        if self.is_clean() {
            writeln!(out, "audit: 0 findings")?;
        } else {
            writeln!(out, "audit: {} findings", self.findings.len())?;
        }
        Ok(())
    }

    /// Sets `bluetick_audit_findings{check}` and the time of this run.
    pub fn record_metrics(&self) {
        for (check, n) in self.per_check() {
            metrics::gauge!(m::AUDIT_FINDINGS, "check" => check).set(n as f64);
        }
        metrics::gauge!(m::AUDIT_LAST_RUN).set(crate::clock::now_secs() as f64);
    }
}

/// Runs every check; progress on long scans goes to `progress`.
pub async fn run(
    cfg: &Config,
    limits: Limits,
    progress: &mut dyn Write,
) -> Result<Report, AuditError> {
    let mut findings = Findings::default();
    let mut report = Report::default();
    secrets(cfg, &mut findings);
    store::audit(cfg, limits, &mut findings, &mut report.coverage, progress).await?;
    topics::audit(cfg, limits, &mut findings, &mut report.coverage, progress).await?;
    report.findings = findings.into_list();
    Ok(report)
}

/// Placeholder or weak secrets among those this configuration holds.
fn secrets(cfg: &Config, findings: &mut Findings) {
    let p = &cfg.privacy;
    let i = &cfg.ingest;
    let keys: [(&str, &Secret, &str); 6] = [
        ("ingest.app_secret", &i.app_secret, &i.app_secret_file),
        (
            "ingest.app_secret_previous",
            &i.app_secret_previous,
            &i.app_secret_previous_file,
        ),
        ("privacy.pepper", &p.pepper, &p.pepper_file),
        ("privacy.id_key", &p.id_key, &p.id_key_file),
        (
            "clickhouse.password",
            &cfg.clickhouse.password,
            &cfg.clickhouse.password_file,
        ),
        (
            "kafka.sasl_password",
            &cfg.kafka.sasl_password,
            &cfg.kafka.sasl_password_file,
        ),
    ];
    for (key, inline, file) in keys {
        let value = if file.is_empty() {
            inline.expose().to_string()
        } else {
            std::fs::read_to_string(file)
                .map(|t| t.trim_end_matches(['\r', '\n']).to_string())
                .unwrap_or_default()
        };
        if value.is_empty() {
            continue;
        }
        if let Some(why) = weakness(&value) {
            findings.add("weak_secret", key, format!("the value {why}"));
        }
    }
}
