//! Meta's WhatsApp Business Account webhook, as borrowed types over the request body.
//!
//! `changes[].value` is one flat struct holding the keys of every `field` bluetick reads
//! (`messages`, template, quality and account updates); which ones are present depends on
//! `field`. One flat struct parses in a single pass whatever the key order (Meta sends `value`
//! before `field`), with no buffering. Keys not named here — message bodies, captions, media,
//! locations, contact cards, profile names, usernames, `biz_opaque_callback_data` — are
//! skipped unread.
//!
//! Invariant: only the envelope can fail to parse. Below `entry`, every field is lenient: a
//! scalar of another type reads as its text or as empty ([`Text`]), an object or list field
//! that holds `null` or a value of another type reads as absent or empty ([`lenient`],
//! [`lenient_seq`]), so a change in a field bluetick does not need never rejects a webhook.

use super::Text;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;

#[derive(Debug, Deserialize)]
pub struct Webhook<'a> {
    #[serde(borrow, default)]
    pub object: Option<Text<'a>>,
    /// Required and a list: a body without it is not a webhook. Items that are not objects
    /// are skipped.
    #[serde(borrow, deserialize_with = "items")]
    pub entry: Vec<Entry<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Entry<'a> {
    /// The WhatsApp Business Account id.
    #[serde(borrow, default)]
    pub id: Text<'a>,
    /// Unix seconds; sent on account-level updates, absent on most `messages` changes.
    #[serde(borrow, default)]
    pub time: Option<Text<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient_seq")]
    pub changes: Vec<Change<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Change<'a> {
    #[serde(borrow, default)]
    pub field: Text<'a>,
    #[serde(borrow, default, deserialize_with = "lenient_or_default")]
    pub value: Value<'a>,
}

/// The union of the `value` keys bluetick keeps, across every `field`.
#[derive(Debug, Default, Deserialize)]
pub struct Value<'a> {
    // field = "messages"
    #[serde(borrow, default, deserialize_with = "lenient")]
    pub metadata: Option<Metadata<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient_seq")]
    pub statuses: Vec<Status<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient_seq")]
    pub messages: Vec<InboundMessage<'a>>,
    /// Who the messages are from (or statuses for): only their identifiers are read, never
    /// the profile (name, username).
    #[serde(borrow, default, deserialize_with = "lenient_seq")]
    pub contacts: Vec<Contact<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient_seq")]
    pub errors: Vec<ErrorInfo<'a>>,

    // template, quality and account updates
    #[serde(borrow, default)]
    pub event: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub message_template_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub message_template_name: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub message_template_language: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub reason: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub previous_quality_score: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub new_quality_score: Option<Text<'a>>,
    /// The business's own number (phone_number_quality_update, account_update): not personal.
    #[serde(borrow, default)]
    pub display_phone_number: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub phone_number: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub current_limit: Option<Text<'a>>,
    /// Replaces `current_limit` from 2026 (phone_number_quality_update,
    /// business_capability_update).
    #[serde(borrow, default)]
    pub max_daily_conversations_per_business: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub max_daily_conversation_per_phone: Option<Text<'a>>,

    // field = "calls": calls (connect, terminate) and call statuses (in `statuses`)
    #[serde(borrow, default, deserialize_with = "lenient_seq")]
    pub calls: Vec<Call<'a>>,
    // field = "user_preferences": marketing opt-outs and opt-ins
    #[serde(borrow, default, deserialize_with = "lenient_seq")]
    pub user_preferences: Vec<UserPreference<'a>>,

    // template lifecycle
    /// `other_info.title`: FIRST_PAUSE, SECOND_PAUSE, UNPAUSE (its description is prose).
    #[serde(borrow, default, deserialize_with = "lenient")]
    pub other_info: Option<Titled<'a>>,
    /// `rejection_info.reason` (its recommendation is prose).
    #[serde(borrow, default, deserialize_with = "lenient")]
    pub rejection_info: Option<Reasoned<'a>>,
    #[serde(borrow, default)]
    pub message_template_category: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub previous_category: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub new_category: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub correct_category: Option<Text<'a>>,

    // account and number health
    #[serde(borrow, default, deserialize_with = "lenient")]
    pub alert_info: Option<AlertInfo<'a>>,
    /// account_review_update, phone_number_name_update.
    #[serde(borrow, default)]
    pub decision: Option<Text<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient")]
    pub violation_info: Option<ViolationInfo<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient")]
    pub ban_info: Option<BanInfo<'a>>,

    // coexistence (the business app beside the API): counted, never read
    #[serde(default, deserialize_with = "count_items")]
    pub message_echoes: u32,
    #[serde(default, deserialize_with = "count_items")]
    pub history: u32,
    #[serde(default, deserialize_with = "count_items")]
    pub state_sync: u32,
}

/// A `calls[]` item: a call connecting or ending. `session` (SDP, which names network
/// addresses) is not declared.
#[derive(Debug, Deserialize)]
pub struct Call<'a> {
    /// The call id (`wacid.…`): carries a number like a wamid, pseudonymised.
    #[serde(borrow, default)]
    pub id: Text<'a>,
    /// Caller and callee: one is the business's number, the other the customer's.
    #[serde(borrow, default)]
    pub from: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub to: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub from_user_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub to_user_id: Option<Text<'a>>,
    /// `connect` or `terminate`.
    #[serde(borrow, default)]
    pub event: Option<Text<'a>>,
    /// `USER_INITIATED` or `BUSINESS_INITIATED`.
    #[serde(borrow, default)]
    pub direction: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub timestamp: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub status: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub start_time: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub end_time: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub duration: Option<Text<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient_seq")]
    pub errors: Vec<ErrorInfo<'a>>,
}

/// A `user_preferences[]` item. `detail` is Meta's prose and is not declared.
#[derive(Debug, Deserialize)]
pub struct UserPreference<'a> {
    /// The customer's number: personal, masked and hashed.
    #[serde(borrow, default)]
    pub wa_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub user_id: Option<Text<'a>>,
    /// `marketing_messages`.
    #[serde(borrow, default)]
    pub category: Option<Text<'a>>,
    /// `stop` or `resume`.
    #[serde(borrow, default)]
    pub value: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub timestamp: Option<Text<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Titled<'a> {
    #[serde(borrow, default)]
    pub title: Option<Text<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Reasoned<'a> {
    #[serde(borrow, default)]
    pub reason: Option<Text<'a>>,
}

/// `alert_info`: its `alert_description` is prose and is not declared.
#[derive(Debug, Deserialize)]
pub struct AlertInfo<'a> {
    #[serde(borrow, default)]
    pub alert_type: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub alert_severity: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub alert_status: Option<Text<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct ViolationInfo<'a> {
    #[serde(borrow, default)]
    pub violation_type: Option<Text<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct BanInfo<'a> {
    /// A list of states; the first is kept.
    #[serde(borrow, default, deserialize_with = "first_text")]
    pub waba_ban_state: Option<Text<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Metadata<'a> {
    /// The business's own number, shown to customers: not personal data.
    #[serde(borrow, default)]
    pub display_phone_number: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub phone_number_id: Option<Text<'a>>,
}

/// A `contacts[]` item: the person a change is about. `profile` (name, username) is content
/// and is not declared.
#[derive(Debug, Deserialize)]
pub struct Contact<'a> {
    /// Phone number: personal.
    #[serde(borrow, default)]
    pub wa_id: Option<Text<'a>>,
    /// Business-scoped user id: personal.
    #[serde(borrow, default)]
    pub user_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub parent_user_id: Option<Text<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Status<'a> {
    /// Meta's message id (`wamid.…`): carries the recipient's number, pseudonymised before
    /// it leaves the process.
    #[serde(borrow, default)]
    pub id: Text<'a>,
    #[serde(borrow, default)]
    pub status: Text<'a>,
    #[serde(borrow, default)]
    pub timestamp: Option<Text<'a>>,
    /// The customer's number — or their user id, or a group id when `recipient_type` is
    /// `group`: personal (but for groups), hashed before it leaves the process.
    #[serde(borrow, default)]
    pub recipient_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub recipient_type: Option<Text<'a>>,
    /// The recipient's business-scoped user id (and parent id), under the names Meta uses
    /// for statuses and the shorter ones it uses elsewhere.
    #[serde(borrow, default)]
    pub recipient_user_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub recipient_parent_user_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub user_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub parent_user_id: Option<Text<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient")]
    pub conversation: Option<Conversation<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient")]
    pub pricing: Option<Pricing<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient_seq")]
    pub errors: Vec<ErrorInfo<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Conversation<'a> {
    #[serde(borrow, default)]
    pub id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub expiration_timestamp: Option<Text<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient")]
    pub origin: Option<Origin<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Origin<'a> {
    #[serde(borrow, default, rename = "type")]
    pub kind: Option<Text<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Pricing<'a> {
    #[serde(borrow, default)]
    pub billable: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub pricing_model: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub category: Option<Text<'a>>,
    #[serde(borrow, default, rename = "type")]
    pub kind: Option<Text<'a>>,
}

/// `errors[]` item. Only `code` and `title` are kept: `message` and `error_data.details` can
/// quote what the customer or business wrote.
#[derive(Debug, Deserialize)]
pub struct ErrorInfo<'a> {
    #[serde(borrow, default)]
    pub code: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub title: Option<Text<'a>>,
}

/// An inbound message. The per-type object (`text`, `image`, `location`, …) is content and is
/// not declared, so it is skipped.
#[derive(Debug, Deserialize)]
pub struct InboundMessage<'a> {
    /// Meta's message id (`wamid.…`): carries the sender's number, pseudonymised.
    #[serde(borrow, default)]
    pub id: Text<'a>,
    /// The customer's number: personal, masked and hashed before it leaves the process.
    /// Absent for a user who adopted a username.
    #[serde(borrow, default)]
    pub from: Option<Text<'a>>,
    /// The sender's business-scoped user id (and parent id): personal, hashed.
    #[serde(borrow, default)]
    pub from_user_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub from_parent_user_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub user_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub parent_user_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub timestamp: Option<Text<'a>>,
    #[serde(borrow, default, rename = "type")]
    pub kind: Option<Text<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient")]
    pub context: Option<Context<'a>>,
    /// Present when the conversation started from an ad: its type and ad id are attribution
    /// metadata, its click id is pseudonymised; headline, body and media are content and are
    /// not declared.
    #[serde(borrow, default, deserialize_with = "lenient")]
    pub referral: Option<Referral<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient_seq")]
    pub errors: Vec<ErrorInfo<'a>>,
    /// Group messages: the group's id, pseudonymised.
    #[serde(borrow, default)]
    pub group_id: Option<Text<'a>>,
    /// The subtype of `interactive` (button_reply, list_reply, nfm_reply = a Flow completed)
    /// and of `system` (user_preference_changed, customer_changed_number, …); their other
    /// keys (titles, bodies, new numbers) are content and are not declared.
    #[serde(borrow, default, deserialize_with = "lenient")]
    pub interactive: Option<Subtyped<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient")]
    pub system: Option<Subtyped<'a>>,
    /// The message a reaction, an edit or a revoke is about (a wamid: pseudonymised); the
    /// emoji and the edited text are not declared.
    #[serde(borrow, default, deserialize_with = "lenient")]
    pub reaction: Option<Target<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient")]
    pub edit: Option<Target<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient")]
    pub revoke: Option<Target<'a>>,
    // The per-type objects, as presence only (their contents are skipped unread): which one
    // a message without `type` carries gives its type.
    #[serde(default)]
    pub text: Option<IgnoredAny>,
    #[serde(default)]
    pub image: Option<IgnoredAny>,
    #[serde(default)]
    pub video: Option<IgnoredAny>,
    #[serde(default)]
    pub audio: Option<IgnoredAny>,
    #[serde(default)]
    pub document: Option<IgnoredAny>,
    #[serde(default)]
    pub sticker: Option<IgnoredAny>,
    #[serde(default)]
    pub location: Option<IgnoredAny>,
    #[serde(default)]
    pub contacts: Option<IgnoredAny>,
    #[serde(default)]
    pub button: Option<IgnoredAny>,
    #[serde(default)]
    pub order: Option<IgnoredAny>,
    #[serde(default)]
    pub unsupported: Option<IgnoredAny>,
}

impl InboundMessage<'_> {
    /// The message's type: `type`, or for a message without one, the type of the per-type
    /// object it carries.
    pub fn kind(&self) -> Option<&str> {
        if let Some(k) = self.kind.as_ref().filter(|k| !k.is_empty()) {
            return Some(k.as_str());
        }
        [
            (self.text.is_some(), "text"),
            (self.image.is_some(), "image"),
            (self.video.is_some(), "video"),
            (self.audio.is_some(), "audio"),
            (self.document.is_some(), "document"),
            (self.sticker.is_some(), "sticker"),
            (self.location.is_some(), "location"),
            (self.contacts.is_some(), "contacts"),
            (self.interactive.is_some(), "interactive"),
            (self.button.is_some(), "button"),
            (self.reaction.is_some(), "reaction"),
            (self.order.is_some(), "order"),
            (self.system.is_some(), "system"),
            (self.unsupported.is_some(), "unsupported"),
        ]
        .into_iter()
        .find_map(|(present, kind)| present.then_some(kind))
    }
}

#[derive(Debug, Deserialize)]
pub struct Referral<'a> {
    /// `ad` or `post`.
    #[serde(borrow, default)]
    pub source_type: Option<Text<'a>>,
    /// The ad's (or post's) id.
    #[serde(borrow, default)]
    pub source_id: Option<Text<'a>>,
    /// The click id of one person's click on the ad: pseudonymised.
    #[serde(borrow, default)]
    pub ctwa_clid: Option<Text<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Subtyped<'a> {
    #[serde(borrow, default, rename = "type")]
    pub kind: Option<Text<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Target<'a> {
    #[serde(borrow, default)]
    pub message_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub original_message_id: Option<Text<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Context<'a> {
    /// The message replied to (a wamid, which carries a number): pseudonymised.
    #[serde(borrow, default)]
    pub id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub forwarded: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub frequently_forwarded: Option<Text<'a>>,
}

/// The methods of a lenient visitor for values it has no use for: `null`, booleans and numbers
/// (and, with `str`, strings) all read as `$value` instead of failing the webhook.
macro_rules! scalars_read_as {
    ($value:expr) => {
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
    ($value:expr, str) => {
        scalars_read_as!($value);
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// An object field as `Some(T)`; `null` or a value of any other type is skipped and reads as
/// `None`, so Meta changing a field's type never rejects the webhook.
pub fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Lenient::<T>::deserialize(d)?.0)
}

/// The number of items of a list (each skipped unread); anything else counts as 0.
fn count_items<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    struct Count;
    impl<'de> Visitor<'de> for Count {
        type Value = u32;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any value")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u32, A::Error> {
            let mut n = 0u32;
            while seq.next_element::<IgnoredAny>()?.is_some() {
                n = n.saturating_add(1);
            }
            Ok(n)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u32, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(0)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<u32, D::Error> {
            d.deserialize_any(self)
        }
        scalars_read_as!(0, str);
    }
    d.deserialize_any(Count)
}

/// A text, or the first text of a list of them; anything else reads as absent.
fn first_text<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Text<'a>>, D::Error> {
    struct First;
    impl<'de> Visitor<'de> for First {
        type Value = Option<Text<'de>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Text::from(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Text(std::borrow::Cow::Owned(v.to_owned()))))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let first = seq.next_element::<Text<'de>>()?;
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(first.filter(|t| !t.is_empty()))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
        scalars_read_as!(None);
    }
    d.deserialize_any(First)
}

/// As [`lenient`], for a field whose absence is its default.
fn lenient_or_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(lenient(d)?.unwrap_or_default())
}

/// A list field: its object items as `T`, other items skipped; `null` or a value that is not
/// a list reads as empty.
pub fn lenient_seq<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_any(SeqVisitor {
        required: false,
        item: PhantomData,
    })
}

/// As [`lenient_seq`], but the value must be a list (the envelope's `entry`).
fn items<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_any(SeqVisitor {
        required: true,
        item: PhantomData,
    })
}

/// `Some(T)` for an object, `None` for anything else (skipped without reading it).
struct Lenient<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LenientVisitor(PhantomData)).map(Lenient)
    }
}

struct LenientVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for LenientVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Some)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }

    scalars_read_as!(None, str);
}

struct SeqVisitor<T> {
    required: bool,
    item: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for SeqVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.required { "a list" } else { "any value" })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(Lenient(item)) = seq.next_element::<Lenient<T>>()? {
            out.extend(item);
        }
        Ok(out)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if self.required {
            return Err(de::Error::invalid_type(de::Unexpected::Map, &self));
        }
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Vec::new())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.other(de::Unexpected::Option)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.other(de::Unexpected::Unit)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        self.other(de::Unexpected::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.other(de::Unexpected::Signed(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.other(de::Unexpected::Unsigned(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.other(de::Unexpected::Float(v))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        // The value is not quoted in the error: it could be anything a person wrote.
        self.other(de::Unexpected::Other("a string"))
    }
}

impl<'de, T: Deserialize<'de>> SeqVisitor<T> {
    fn other<E: de::Error>(&self, what: de::Unexpected<'_>) -> Result<Vec<T>, E> {
        if self.required {
            Err(de::Error::invalid_type(what, self))
        } else {
            Ok(Vec::new())
        }
    }
}

/// Deepest nesting a body may have. Meta's payloads nest about eight levels; serde walks the
/// values it skips (unknown fields, ignored content) recursively, one stack frame set per
/// level, so a body nested a hundred thousand levels deep would overflow the stack.
pub const MAX_DEPTH: usize = 128;

thread_local! {
    /// simd-json's scratch space (a padded copy of the input, string and index buffers), kept
    /// per thread instead of allocated for every body.
    static SCRATCH: RefCell<simd_json::Buffers> = RefCell::new(simd_json::Buffers::default());
}

/// Scratch space grown by a body larger than this is released afterwards, so one large body
/// does not pin megabytes on every worker thread.
const KEEP_SCRATCH_FOR: usize = 256 * 1024;

impl<'a> Webhook<'a> {
    /// Parses in place: strings borrow from `body`, which simd-json rewrites while unescaping.
    /// The tape (built without recursion) is checked for depth before serde walks it.
    pub fn parse(body: &'a mut [u8]) -> Result<Self, simd_json::Error> {
        let large = body.len() > KEEP_SCRATCH_FOR;
        let tape = SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut buffers) => {
                let tape = simd_json::to_tape_with_buffers(body, &mut buffers);
                if large {
                    *buffers = simd_json::Buffers::default();
                }
                tape
            }
            Err(_) => simd_json::to_tape(body),
        })?;
        if depth(&tape.0) > MAX_DEPTH {
            let why = format!("nested deeper than {MAX_DEPTH} levels");
            return Err(simd_json::Error::generic(simd_json::ErrorType::Serde(why)));
        }
        tape.deserialize()
    }
}

/// Nesting depth of a simd-json tape, up to `MAX_DEPTH + 1`, without recursion or allocation:
/// each open container stays on the stack until the walk passes its last node (`count` covers
/// every node inside it).
fn depth(tape: &[simd_json::Node<'_>]) -> usize {
    let mut open_until = [0usize; MAX_DEPTH];
    let mut open = 0;
    let mut deepest = 0;
    for (i, node) in tape.iter().enumerate() {
        while open > 0 && i > open_until[open - 1] {
            open -= 1;
        }
        if let simd_json::Node::Array { count, .. } | simd_json::Node::Object { count, .. } = node {
            if open == MAX_DEPTH {
                return MAX_DEPTH + 1;
            }
            open_until[open] = i + count;
            open += 1;
            deepest = deepest.max(open);
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_of(json: &str) -> usize {
        let mut bytes = json.as_bytes().to_vec();
        depth(&simd_json::to_tape(&mut bytes).expect("json").0)
    }

    #[test]
    fn depth_counts_the_deepest_branch() {
        assert_eq!(depth_of("1"), 0);
        assert_eq!(depth_of("[]"), 1);
        assert_eq!(depth_of(r#"{"a":[1,{"b":[]}],"c":2}"#), 4);
        assert_eq!(depth_of("[[[]],[[]]]"), 3);
        assert_eq!(depth_of(r#"[[],{},[[[]]],{"k":{"k":1}}]"#), 4);
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(depth_of(&deep), MAX_DEPTH + 1);
    }

    #[test]
    fn bodies_nested_too_deep_are_refused_not_a_crash() {
        let inner = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let mut body =
            format!(r#"{{"object":"whatsapp_business_account","x":{inner},"entry":[]}}"#)
                .into_bytes();
        let err = Webhook::parse(&mut body).expect_err("too deep");
        assert!(err.to_string().contains("nested deeper"), "{err}");
        let ok = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        let mut body =
            format!(r#"{{"object":"whatsapp_business_account","x":{ok},"entry":[]}}"#).into_bytes();
        assert!(Webhook::parse(&mut body).is_ok());
    }
}
