//! Meta's WhatsApp Business Account webhook, as borrowed types over the request body.
//!
//! `changes[].value` is one flat struct holding the keys of every `field` bluetick reads
//! (`messages`, template, quality and account updates); which ones are present depends on
//! `field`. One flat struct parses in a single pass whatever the key order (Meta sends `value`
//! before `field`), with no buffering. Keys not named here — message bodies, captions, media,
//! locations, contact cards, profile names, `biz_opaque_callback_data` — are skipped unread.

use super::Text;
use serde::de::IgnoredAny;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Webhook<'a> {
    #[serde(borrow, default)]
    pub object: Option<Text<'a>>,
    #[serde(borrow)]
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
    #[serde(borrow, default)]
    pub changes: Vec<Change<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Change<'a> {
    #[serde(borrow, default)]
    pub field: Text<'a>,
    #[serde(borrow, default)]
    pub value: Value<'a>,
}

/// The union of the `value` keys bluetick keeps, across every `field`.
#[derive(Debug, Default, Deserialize)]
pub struct Value<'a> {
    // field = "messages"
    #[serde(borrow, default)]
    pub metadata: Option<Metadata<'a>>,
    #[serde(borrow, default)]
    pub statuses: Vec<Status<'a>>,
    #[serde(borrow, default)]
    pub messages: Vec<InboundMessage<'a>>,
    #[serde(borrow, default)]
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
}

#[derive(Debug, Deserialize)]
pub struct Metadata<'a> {
    /// The business's own number, shown to customers: not personal data.
    #[serde(borrow, default)]
    pub display_phone_number: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub phone_number_id: Option<Text<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Status<'a> {
    #[serde(borrow, default)]
    pub id: Text<'a>,
    #[serde(borrow, default)]
    pub status: Text<'a>,
    #[serde(borrow, default)]
    pub timestamp: Option<Text<'a>>,
    /// The customer's number: personal, masked and hashed before it leaves the process.
    #[serde(borrow, default)]
    pub recipient_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub recipient_type: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub conversation: Option<Conversation<'a>>,
    #[serde(borrow, default)]
    pub pricing: Option<Pricing<'a>>,
    #[serde(borrow, default)]
    pub errors: Vec<ErrorInfo<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Conversation<'a> {
    #[serde(borrow, default)]
    pub id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub expiration_timestamp: Option<Text<'a>>,
    #[serde(borrow, default)]
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
    #[serde(borrow, default)]
    pub id: Text<'a>,
    /// The customer's number: personal, masked and hashed before it leaves the process.
    #[serde(borrow, default)]
    pub from: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub timestamp: Option<Text<'a>>,
    #[serde(borrow, default, rename = "type")]
    pub kind: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub context: Option<Context<'a>>,
    /// Present when the conversation started from an ad; its contents (headline, body, media)
    /// are content, so only the presence is read.
    #[serde(default)]
    pub referral: Option<IgnoredAny>,
    #[serde(borrow, default)]
    pub errors: Vec<ErrorInfo<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Context<'a> {
    /// The message replied to (a wamid), not personal.
    #[serde(borrow, default)]
    pub id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub forwarded: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub frequently_forwarded: Option<Text<'a>>,
}

impl<'a> Webhook<'a> {
    /// Parses in place: strings borrow from `body`, which simd-json rewrites while unescaping.
    pub fn parse(body: &'a mut [u8]) -> Result<Self, simd_json::Error> {
        simd_json::serde::from_slice(body)
    }
}
