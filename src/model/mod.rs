//! The data contract, in one place: what Meta sends ([`webhook`]), what bluetick writes to Kafka
//! ([`event`], framed in records by [`record`]). Ingest and sink both read these types; nothing
//! else redefines a field.
//!
//! Privacy is kept by construction here: the wire types have no field for message bodies,
//! captions, media, locations, contact cards or profile names, so the parser skips them and no
//! later stage can carry them.

mod encode;
pub mod event;
pub mod record;
pub mod text;
pub mod webhook;

pub use event::{Event, EventId, EventKind, SecurityEvent, EVENT_VERSION};
pub use text::Text;
pub use webhook::Webhook;
