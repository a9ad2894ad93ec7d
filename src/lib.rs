//! bluetick: WhatsApp Business Platform webhooks → Kafka → ClickHouse, keeping masked
//! delivery metadata only.
//!
//! ```text
//! Meta ──POST──▶ ingest ──▶ Kafka ──▶ sink ──▶ ClickHouse ◀── dashboards
//! ```
//!
//! - [`model`]: the data contract — Meta's payload (borrowed wire types) and the event written
//!   to Kafka. Privacy starts here: no type has a field for message content.
//! - [`ingest`]: the HTTP server — verify the signature, parse in place, split into events,
//!   mask phone numbers, produce, answer 200 only after the broker acked.
//! - [`sink`]: Kafka → ClickHouse in batches, offsets committed after the insert.
//! - [`retention`]: drops day partitions past each table's retention.
//! - [`tables`]: the ClickHouse tables and the retention rule sink and retention share.
//! - [`privacy`]: masking and keyed hashing of phone numbers.
//! - [`kafka`]: client settings and topic creation shared by the components.
//! - [`migrate`]: the versioned ClickHouse schema (`schemas/clickhouse/`) and Kafka topics.
//! - [`clock`], [`config`], [`metrics`]: configuration (file + `BLUETICK_*` env) and Prometheus metrics.

pub mod clock;
pub mod config;
pub mod ingest;
pub mod kafka;
pub mod metrics;
pub mod migrate;
pub mod model;
pub mod privacy;
pub mod retention;
pub mod sink;
pub mod tables;
