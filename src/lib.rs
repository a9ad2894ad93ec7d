//! bluetick: WhatsApp Business Platform webhooks → Kafka → ClickHouse, keeping masked
//! delivery metadata only.
//!
//! ```text
//! Meta ──POST──▶ ingest ──▶ Kafka ──▶ sink ──▶ ClickHouse ◀── dashboards
//! ```
//!
//! The crate is built in floors; a module imports only from floors below its own, never from
//! a module beside it.
//!
//! 1. **Subcommands**, one module each with one `run`: [`ingest`] (the HTTP server: verify,
//!    parse in place, split, mask, produce, 200 only after the broker acked), [`sink`] (Kafka →
//!    ClickHouse in batches, offsets committed after the insert), [`migrate`] (versioned schema
//!    and topics), [`retention`] (day-partition drops), [`erase`] and [`export`] (a person's
//!    rights), [`message_key`] (Meta ids → the pseudonyms stored in their place), [`audit`]
//!    (the privacy promise checked on the live data), [`replay`] (dead letters back to be
//!    stored), [`rate_card`] (prices for the estimated spend).
//! 2. **The data contract and the shared clients**: [`model`] (Meta's wire types, the event
//!    and its encoding, the records, the ClickHouse rows and tables), [`kafka`] (client
//!    settings, topics, the bounded producer), [`clickhouse`] (client, quoting, errors, schema
//!    queries), [`ops`] (`/metrics`, `/healthz`, `/readyz`), [`pushgateway`] (the jobs'
//!    outcomes), [`rollup`] (the daily aggregates, recounted per day).
//! 3. **Primitives**: [`privacy`] (masking, keyed hashing, people as operators name them),
//!    [`config`] (file + `BLUETICK_*` env), [`metrics`] (names and recorder), [`health`]
//!    (watches with deadlines), [`clock`], [`allocator`] (how freed memory goes back).

pub mod allocator;
pub mod audit;
pub mod clickhouse;
pub mod clock;
pub mod config;
pub mod erase;
pub mod export;
pub mod health;
pub mod ingest;
pub mod kafka;
pub mod message_key;
pub mod metrics;
pub mod migrate;
pub mod model;
pub mod ops;
pub mod privacy;
pub mod pushgateway;
pub mod rate_card;
pub mod replay;
pub mod retention;
pub mod rollup;
pub mod sink;
