//! Meta-shaped webhooks for tests, with content marked `SECRET` that must never be stored,
//! and the fixtures.

/// A webhook with `n` distinct statuses spread over two entries; returns the body and the
/// customer numbers in it.
pub fn statuses_body(n: usize, tag: &str) -> (Vec<u8>, Vec<String>) {
    let statuses = ["sent", "delivered", "read", "failed"];
    let mut numbers = Vec::with_capacity(n);
    let make = |range: std::ops::Range<usize>,
                numbers: &mut Vec<String>|
     -> Vec<serde_json::Value> {
        range
            .map(|i| {
                let number = format!("9198{:08}", 10_000_000 + i);
                numbers.push(number.clone());
                serde_json::json!({
                    "id": super::wamid(&number, &format!("{tag}{i:06}")),
                    "status": statuses[i % statuses.len()],
                    "timestamp": (1_750_000_000 + i).to_string(),
                    "recipient_id": number,
                    "biz_opaque_callback_data": "SECRET-OPAQUE",
                    "pricing": {"billable": true, "pricing_model": "PMP", "category": "utility", "type": "regular"}
                })
            })
            .collect()
    };
    let half = n / 2;
    let first = make(0..half, &mut numbers);
    let second = make(half..n, &mut numbers);
    let change = |statuses: Vec<serde_json::Value>| {
        serde_json::json!({"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "statuses": statuses}})
    };
    let body = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [
            {"id": "102290129340398", "changes": [change(first)]},
            {"id": "102290129340399", "changes": [change(second)]}
        ]
    });
    (serde_json::to_vec(&body).expect("json"), numbers)
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// One status update for [`status_body`].
#[derive(Debug, Clone)]
pub struct Status {
    pub message_id: String,
    pub status: &'static str,
    pub ts: u64,
    pub number: String,
}

/// A webhook carrying `statuses` in the given order, with pricing, a conversation, an
/// error for failures, and content markers (`SECRET`) that must never be stored.
pub fn status_body(statuses: &[Status]) -> Vec<u8> {
    let list: Vec<serde_json::Value> = statuses
        .iter()
        .map(|s| {
            let mut v = serde_json::json!({
                "id": s.message_id,
                "status": s.status,
                "timestamp": s.ts.to_string(),
                "recipient_id": s.number,
                "biz_opaque_callback_data": "SECRET-OPAQUE",
                "conversation": {"id": "conv-1", "origin": {"type": "marketing"}},
                "pricing": {"billable": true, "pricing_model": "PMP", "category": "marketing", "type": "regular"}
            });
            if s.status == "failed" {
                v["errors"] = serde_json::json!([{"code": 131049, "title": "Not delivered",
                    "message": "SECRET-MESSAGE", "error_data": {"details": "SECRET-DETAILS"}}]);
            }
            v
        })
        .collect();
    let body = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "statuses": list}}]}]
    });
    serde_json::to_vec(&body).expect("json")
}

/// A webhook with one inbound message per `(sender number, message id)`, alternating text and
/// image, with content (body, caption, media id, profile name) marked `SECRET` that must
/// never be stored.
pub fn inbound_body(from: &[(String, String)], ts: u64) -> Vec<u8> {
    let messages: Vec<serde_json::Value> = from
        .iter()
        .enumerate()
        .map(|(i, (number, id))| {
            let mut m = serde_json::json!({"from": number, "id": id, "timestamp": ts.to_string()});
            if i % 2 == 0 {
                m["type"] = "text".into();
                m["text"] = serde_json::json!({"body": "SECRET-BODY"});
            } else {
                m["type"] = "image".into();
                m["image"] = serde_json::json!({"id": "SECRET-MEDIA", "caption": "SECRET-CAPTION"});
            }
            m
        })
        .collect();
    let contacts: Vec<serde_json::Value> = from
        .iter()
        .map(|(number, _)| serde_json::json!({"profile": {"name": "SECRET-NAME"}, "wa_id": number}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": contacts,
            "messages": messages}}]}]
    }))
    .expect("json")
}
