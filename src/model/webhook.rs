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
use std::cell::RefCell;

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
