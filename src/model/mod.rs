//! The data contract, in one place: what Meta sends ([`webhook`]), what bluetick writes to Kafka
//! ([`event`], encoded by hand as JSON or as protobuf by [`proto`], and framed in records by
//! [`record`]), and what lands in ClickHouse ([`rows`], one type per table of [`tables`], with
//! the table list and its retention rule, written as [`rowbinary`]). Ingest and sink both read these types; nothing else
//! redefines a field, so adding one touches this module, `schemas/` and the parser.
//!
//! Privacy is kept by construction here: the wire types have no field for message bodies,
//! captions, media, locations, contact cards or profile names, so the parser skips them and no
//! later stage can carry them.

mod encode;
pub mod event;
pub mod proto;
pub mod record;
pub mod rowbinary;
pub mod rows;
pub mod skeleton;
pub mod tables;
pub mod text;
pub mod webhook;

pub use event::{Event, EventId, EventKind, SecurityEvent, EVENT_VERSION, OLDEST_EVENT_VERSION};
pub use tables::Table;
pub use text::Text;
pub use webhook::Webhook;
