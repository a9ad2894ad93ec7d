//! The record bluetick writes to Kafka: one JSON object per status, inbound message or
//! account update (schema: `schemas/event.v2.schema.json`).
//!
//! Invariant: an `Event` can only hold metadata. A person enters it only as keyed hashes of
//! their identifiers (plus the masked form of a phone number), Meta's ids only as keyed
//! pseudonyms (they carry phone numbers), and it has no field that could carry a body,
//! caption, media id, location, name or username. `id` is derived from the update's natural
//! key, so Meta's retries of the same update produce the same id and deduplicate downstream.
//!
//! Version 1 events (written before ids were pseudonymised) carried Meta's raw message ids;
//! the sink still reads them and keys those ids itself ([`Event::legacy_message_id`]).

use crate::privacy::hash::decode_hex;
use crate::privacy::{MaskedPhone, PersonHash, Pseudonym};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_with::skip_serializing_none;
use std::borrow::Cow;
use std::fmt;

pub const EVENT_VERSION: u16 = 2;

/// The oldest event version the sink still reads.
pub const OLDEST_EVENT_VERSION: u16 = 1;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// `statuses[]`: sent, delivered, read, failed, or a status Meta adds later.
    Status,
    /// `messages[]`: an inbound message's metadata.
    Message,
    /// `errors[]` at `value` level: out-of-band errors.
    Error,
    TemplateStatus,
    TemplateQuality,
    PhoneQuality,
    AccountUpdate,
    /// `calls[]`: a call connecting or ending (field `calls`).
    Call,
    /// `statuses[]` of field `calls`: ringing, accepted, rejected.
    CallStatus,
    /// `user_preferences[]`: a customer stopping or resuming marketing messages.
    OptOut,
    /// `template_category_update`: Meta re-categorised a template (a price change).
    TemplateCategory,
    /// `message_template_components_update` (the components are the template's text: only
    /// the template is named).
    TemplateComponents,
    AccountAlert,
    AccountReview,
    BusinessCapability,
    PhoneName,
    /// Any other `field`: kept as field name, WABA id and time, never dropped.
    #[default]
    Other,
}

impl EventKind {
    /// Every kind, in declaration order: per-kind counters are registered from this list.
    pub const ALL: [EventKind; 17] = [
        EventKind::Status,
        EventKind::Message,
        EventKind::Error,
        EventKind::TemplateStatus,
        EventKind::TemplateQuality,
        EventKind::PhoneQuality,
        EventKind::AccountUpdate,
        EventKind::Call,
        EventKind::CallStatus,
        EventKind::OptOut,
        EventKind::TemplateCategory,
        EventKind::TemplateComponents,
        EventKind::AccountAlert,
        EventKind::AccountReview,
        EventKind::BusinessCapability,
        EventKind::PhoneName,
        EventKind::Other,
    ];

    /// Position in [`EventKind::ALL`], for per-kind arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Stable, bounded label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Status => "status",
            EventKind::Message => "message",
            EventKind::Error => "error",
            EventKind::TemplateStatus => "template_status",
            EventKind::TemplateQuality => "template_quality",
            EventKind::PhoneQuality => "phone_quality",
            EventKind::AccountUpdate => "account_update",
            EventKind::Call => "call",
            EventKind::CallStatus => "call_status",
            EventKind::OptOut => "opt_out",
            EventKind::TemplateCategory => "template_category",
            EventKind::TemplateComponents => "template_components",
            EventKind::AccountAlert => "account_alert",
            EventKind::AccountReview => "account_review",
            EventKind::BusinessCapability => "business_capability",
            EventKind::PhoneName => "phone_name",
            EventKind::Other => "other",
        }
    }
}

/// 128-bit id from the natural key of an update (xxh3-128, a fixed algorithm, so ids stay
/// stable across releases and processes).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub u128);

impl EventId {
    /// Hashes `parts` with a separator that cannot occur inside JSON-decoded ids.
    pub fn derive(kind: EventKind, parts: &[&str]) -> Self {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(kind.as_str().as_bytes());
        for p in parts {
            h.update(&[0x1f]);
            h.update(p.as_bytes());
        }
        EventId(h.digest128())
    }

    pub(crate) fn hex(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        // The buffer is exactly twice the input length, so encoding cannot fail.
        let _ = faster_hex::hex_encode(&self.0.to_be_bytes(), &mut out);
        out
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.hex()).unwrap_or_default())
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(std::str::from_utf8(&self.hex()).unwrap_or_default())
    }
}

impl<'de> Deserialize<'de> for EventId {
    /// Exactly 32 hex digits.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(EventIdVisitor)
    }
}

/// Takes the id from the input in place, escaped or not, without an owned copy.
struct EventIdVisitor;

impl Visitor<'_> for EventIdVisitor {
    type Value = EventId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("32 hex digits")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<EventId, E> {
        decode_hex(s)
            .map(|b| EventId(u128::from_be_bytes(b)))
            .ok_or_else(|| E::custom("event id is not 32 hex digits"))
    }
}

/// An optional string borrowed from the input unless it had escapes. serde's `borrow`
/// attribute borrows a bare `Cow<str>` but copies one inside an `Option`, which cost the sink
/// an allocation per present field per row.
fn borrow_opt<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    d.deserialize_option(OptStr)
}

struct OptStr;

impl<'de> Visitor<'de> for OptStr {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(s)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(s.to_owned())))
    }
}

/// One update, flattened. Fields that a kind does not have are absent from the JSON.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event<'a> {
    pub v: u16,
    pub id: EventId,
    pub kind: EventKind,
    /// When bluetick received the webhook, Unix milliseconds.
    pub received_ms: u64,
    /// When the update happened per Meta, Unix seconds (received time if Meta sent none).
    pub ts: u64,
    #[serde(borrow)]
    pub waba_id: Cow<'a, str>,
    #[serde(borrow)]
    pub field: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub phone_number_id: Option<Cow<'a, str>>,
    /// The business's own number (from `metadata`), not a customer's.
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub display_phone_number: Option<Cow<'a, str>>,

    /// The keyed pseudonym of Meta's message id (`IdKey::pseudonym`).
    pub message_key: Option<Pseudonym>,
    /// Version 1 only: Meta's raw message id. Never written; the sink keys it on read.
    #[serde(
        rename = "message_id",
        borrow,
        default,
        skip_serializing,
        deserialize_with = "borrow_opt"
    )]
    pub legacy_message_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub status: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub message_type: Option<Cow<'a, str>>,
    /// `individual` or `group` (a group is not a person: no person fields then).
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub recipient_type: Option<Cow<'a, str>>,
    /// The customer (status recipient or inbound sender), masked.
    pub person_masked: Option<MaskedPhone>,
    /// HMAC-SHA256(pepper, digits) of the customer's number, hex.
    pub person_hash: Option<PersonHash>,
    /// HMAC-SHA256(pepper, "u:" + id) of the customer's business-scoped user id, hex.
    pub user_hash: Option<PersonHash>,
    /// The same of their parent business-scoped user id (linked business portfolios).
    pub parent_user_hash: Option<PersonHash>,
    /// The pseudonym of the message replied to.
    pub context_message_key: Option<Pseudonym>,
    /// Version 1 only: the raw id of the message replied to.
    #[serde(
        rename = "context_message_id",
        borrow,
        default,
        skip_serializing,
        deserialize_with = "borrow_opt"
    )]
    pub legacy_context_message_id: Option<Cow<'a, str>>,
    pub forwarded: Option<bool>,
    pub from_ad: Option<bool>,

    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub conversation_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub conversation_origin: Option<Cow<'a, str>>,
    pub conversation_expiration_ts: Option<u64>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub pricing_model: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub pricing_category: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub pricing_type: Option<Cow<'a, str>>,
    pub billable: Option<bool>,
    pub error_code: Option<i64>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub error_title: Option<Cow<'a, str>>,

    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub template_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub template_name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub template_language: Option<Cow<'a, str>>,
    /// The `event` of a template, quality or account update (APPROVED, FLAGGED, …).
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub update_event: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub reason: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub previous_quality: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub new_quality: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub current_limit: Option<Cow<'a, str>>,

    /// The client business (a label of the BSP's tenant map) the WABA or phone number belongs
    /// to.
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub tenant: Option<Cow<'a, str>>,
    /// The person's country calling code (`91`, `1`, `44`): the market, for spend per
    /// market; identifies no one.
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub country_code: Option<Cow<'a, str>>,
    /// `interactive` subtype (button_reply, list_reply, nfm_reply) or `system` subtype.
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub message_subtype: Option<Cow<'a, str>>,
    /// The pseudonym of the message a reaction, edit or revoke is about.
    pub target_message_key: Option<Pseudonym>,
    /// The pseudonym of a group's id (group messages).
    pub group_key: Option<Pseudonym>,
    /// Click-to-WhatsApp ad attribution: the referral's source type and ad id, and the
    /// pseudonym of its click id.
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub ad_source_type: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub ad_source_id: Option<Cow<'a, str>>,
    pub ad_click_key: Option<Pseudonym>,
    /// Items in a change counted but not read (message echoes, history, app state sync).
    pub item_count: Option<u32>,
    /// Calls: `USER_INITIATED` or `BUSINESS_INITIATED`, and the call's times (Unix seconds)
    /// and duration (seconds).
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub direction: Option<Cow<'a, str>>,
    pub call_start_ts: Option<u64>,
    pub call_end_ts: Option<u64>,
    pub call_duration_s: Option<u64>,
    /// Opt-outs: the category (`marketing_messages`) and `stop` or `resume`.
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub preference_category: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub preference: Option<Cow<'a, str>>,
    /// Templates: the category, a pause's title, and a re-categorisation's three categories.
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub template_category: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub pause_title: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub previous_category: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub new_category: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub correct_category: Option<Cow<'a, str>>,
    /// Account health: an alert's type, severity and status; a review's or name change's
    /// decision; a violation's type; the first ban state; the messaging limit.
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub alert_type: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub alert_severity: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub alert_status: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub decision: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub violation_type: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub ban_state: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrow_opt")]
    pub max_daily_conversations: Option<Cow<'a, str>>,
}

impl Event<'_> {
    /// Appends the record ingest writes to Kafka for this event: the JSON `Serialize` would
    /// write, written by hand on the hot path (see `encode.rs`); the sink reads it back with
    /// `Deserialize`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        super::encode::encode(self, out);
    }

    /// Replaces the raw ids a version 1 event carried by their pseudonyms, so that no raw id
    /// goes further than the decoder.
    pub fn key_legacy_ids(&mut self, key: &crate::privacy::IdKey) {
        if let Some(raw) = self.legacy_message_id.take() {
            self.message_key = Some(key.pseudonym(&raw));
        }
        if let Some(raw) = self.legacy_context_message_id.take() {
            self.context_message_key = Some(key.pseudonym(&raw));
        }
    }
}

/// A request bluetick refused for its credentials (schema: `schemas/security.v1.schema.json`).
/// Never holds the body or the presented signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityEvent<'a> {
    pub v: u16,
    pub received_ms: u64,
    #[serde(borrow)]
    pub source_ip: Cow<'a, str>,
    /// `missing_signature`, `malformed_signature`, `bad_signature` or `bad_verify_token`.
    #[serde(borrow)]
    pub reason: Cow<'a, str>,
    #[serde(borrow)]
    pub route: Cow<'a, str>,
    /// Refusals of this source for this reason and route in the window that starts at
    /// `received_ms` (records written before counting existed mean one).
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_round_trips_and_omits_absent_fields() {
        let e = Event {
            v: EVENT_VERSION,
            id: EventId::derive(EventKind::Status, &["wamid.X", "read", "1"]),
            kind: EventKind::Status,
            received_ms: 5,
            ts: 1,
            waba_id: "1".into(),
            field: "messages".into(),
            status: Some("read".into()),
            ..Event::default()
        };
        let json = serde_json::to_string(&e).expect("serialize");
        assert!(!json.contains("null"), "{json}");
        assert!(json.contains(r#""kind":"status""#), "{json}");
        let back: Event = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, e);
    }

    #[test]
    fn ids_are_exactly_32_lowercase_hex_digits() {
        let id = EventId::derive(EventKind::Status, &["wamid.A", "read"]);
        let hex = String::from_utf8(id.hex().to_vec()).expect("ascii");
        assert!(hex
            .bytes()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
        let parse = |s: &str| serde_json::from_value::<EventId>(serde_json::json!(s));
        assert_eq!(parse(&hex).expect("round trip"), id);
        for bad in [&hex[..30], &format!("{hex}00"), &"z".repeat(32)] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_follow_the_natural_key() {
        let a = EventId::derive(EventKind::Status, &["wamid.A", "read"]);
        assert_eq!(a, EventId::derive(EventKind::Status, &["wamid.A", "read"]));
        assert_ne!(
            a,
            EventId::derive(EventKind::Status, &["wamid.A", "delivered"])
        );
        assert_ne!(a, EventId::derive(EventKind::Message, &["wamid.A", "read"]));
        assert_ne!(
            EventId::derive(EventKind::Status, &["ab", "c"]),
            EventId::derive(EventKind::Status, &["a", "bc"])
        );
    }
}

#[cfg(test)]
mod schema {
    use super::*;
    use crate::privacy::{Pepper, Person};
    use std::collections::BTreeSet;

    fn schema_properties(json: &str) -> BTreeSet<String> {
        let schema: serde_json::Value = serde_json::from_str(json).expect("schema is JSON");
        schema["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .cloned()
            .collect()
    }

    /// Every field of `Event` is documented in the schema, and nothing else is.
    #[test]
    fn event_schema_matches_the_type() {
        let person = Person::protect(&Pepper::new(b"k"), "919876544321");
        let s = || Some(Cow::Borrowed("x"));
        let full = Event {
            v: 1,
            id: EventId(1),
            kind: EventKind::Status,
            received_ms: 1,
            ts: 1,
            waba_id: "w".into(),
            field: "messages".into(),
            phone_number_id: s(),
            display_phone_number: s(),
            message_key: Some(Pseudonym([1; 16])),
            legacy_message_id: s(),
            status: s(),
            message_type: s(),
            recipient_type: s(),
            person_masked: Some(person.masked),
            person_hash: Some(person.hash),
            user_hash: Some(person.hash),
            parent_user_hash: Some(person.hash),
            context_message_key: Some(Pseudonym([2; 16])),
            legacy_context_message_id: s(),
            forwarded: Some(true),
            from_ad: Some(false),
            conversation_id: s(),
            conversation_origin: s(),
            conversation_expiration_ts: Some(1),
            pricing_model: s(),
            pricing_category: s(),
            pricing_type: s(),
            billable: Some(true),
            error_code: Some(1),
            error_title: s(),
            template_id: s(),
            template_name: s(),
            template_language: s(),
            update_event: s(),
            reason: s(),
            previous_quality: s(),
            new_quality: s(),
            current_limit: s(),
            tenant: s(),
            country_code: s(),
            message_subtype: s(),
            target_message_key: Some(Pseudonym([3; 16])),
            group_key: Some(Pseudonym([4; 16])),
            ad_source_type: s(),
            ad_source_id: s(),
            ad_click_key: Some(Pseudonym([5; 16])),
            item_count: Some(2),
            direction: s(),
            call_start_ts: Some(1),
            call_end_ts: Some(2),
            call_duration_s: Some(1),
            preference_category: s(),
            preference: s(),
            template_category: s(),
            pause_title: s(),
            previous_category: s(),
            new_category: s(),
            correct_category: s(),
            alert_type: s(),
            alert_severity: s(),
            alert_status: s(),
            decision: s(),
            violation_type: s(),
            ban_state: s(),
            max_daily_conversations: s(),
        };
        let value = serde_json::to_value(&full).expect("serialize");
        let fields: BTreeSet<String> = value.as_object().expect("object").keys().cloned().collect();
        assert_eq!(
            fields,
            schema_properties(include_str!("../../schemas/event.v2.schema.json"))
        );
    }

    /// A version 1 line (raw wamids) decodes, and its ids are keyed before anything else
    /// sees them.
    #[test]
    fn version_1_events_are_read_and_their_raw_ids_keyed() {
        let line = r#"{"v":1,"id":"000000000000000000000000000000aa","kind":"message","received_ms":1,"ts":1,"waba_id":"w","field":"messages","message_id":"wamid.HBgLMTU1NTEyMzQ1NjcVAgARGBI3MDA4RjU3QkRCQUM2QkQ5QjUA","context_message_id":"wamid.ctx"}"#;
        let mut e: Event = serde_json::from_str(line).expect("v1 decodes");
        assert_eq!(e.v, OLDEST_EVENT_VERSION);
        let key = crate::privacy::IdKey::new(b"id-key-0123456789");
        e.key_legacy_ids(&key);
        assert_eq!(
            e.message_key,
            Some(key.pseudonym("wamid.HBgLMTU1NTEyMzQ1NjcVAgARGBI3MDA4RjU3QkRCQUM2QkQ5QjUA"))
        );
        assert_eq!(e.context_message_key, Some(key.pseudonym("wamid.ctx")));
        assert!(e.legacy_message_id.is_none() && e.legacy_context_message_id.is_none());
        let again = serde_json::to_string(&e).expect("serialize");
        assert!(!again.contains("wamid"), "{again}");
    }

    #[test]
    fn security_schema_matches_the_type() {
        let e = SecurityEvent {
            v: 1,
            received_ms: 1,
            source_ip: "127.0.0.1".into(),
            reason: "bad_signature".into(),
            route: "webhook".into(),
            count: 3,
        };
        let value = serde_json::to_value(&e).expect("serialize");
        let fields: BTreeSet<String> = value.as_object().expect("object").keys().cloned().collect();
        assert_eq!(
            fields,
            schema_properties(include_str!("../../schemas/security.v1.schema.json"))
        );
    }
}
