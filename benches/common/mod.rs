//! Webhook bodies shared by the benches.

/// A `statuses` webhook of `n` updates for distinct recipients, timestamps from 1,750,000,000
/// on, one second apart.
pub fn statuses(n: usize) -> Vec<u8> {
    let items: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"id":"wamid.HBgMOTE5ODc2NTQ0MzIxFQIAERgSQzRGNzU2QjEzMEFBNjA3{i:08}AA==","status":"{}","timestamp":"{}","recipient_id":"9198{:08}","pricing":{{"billable":true,"pricing_model":"PMP","category":"utility","type":"regular"}}}}"#,
                ["sent", "delivered", "read"][i % 3],
                1_750_000_000 + i,
                10_000_000 + i
            )
        })
        .collect();
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"102290129340398","changes":[{{"value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550783881","phone_number_id":"106540352242922"}},"statuses":[{}]}},"field":"messages"}}]}}]}}"#,
        items.join(",")
    )
    .into_bytes()
}
