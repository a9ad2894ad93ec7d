//! Load generator for bluetick and the reference servers it is measured against.
//!
//! - [`traffic`]: realistic, signed webhook bodies (statuses, batches, inbound, account updates,
//!   duplicates, out-of-order statuses);
//! - [`drive`]: open-loop sending at a fixed rate, latency from the scheduled send time;
//! - [`probe`]: webhook -> queryable-in-ClickHouse timing;
//! - [`bare`] and [`baseline`]: the HTTP ceiling and a conventional axum + serde_json receiver.

pub mod bare;
pub mod baseline;
pub mod drive;
pub mod probe;
pub mod report;
pub mod traffic;
