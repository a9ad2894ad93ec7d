//! Realistic, correctly signed WhatsApp webhook bodies, generated on the fly.
//!
//! Shapes follow Meta's Cloud API: one status per POST (the common case), status batches of up
//! to 1000 updates, inbound messages of several types with their content (which bluetick must
//! drop), template and quality updates. A share of requests are exact copies of a recent one
//! (Meta's retries) and a share of messages report their statuses newest first. Ids carry a run
//! tag so that runs never collide in ClickHouse's deduplicated views.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::VecDeque;
use std::fmt::Write as _;

/// What the generated requests look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// One status per POST.
    Single,
    /// 100 statuses per POST.
    Batch100,
    /// 1000 statuses per POST, Meta's documented maximum.
    Batch1000,
    /// A BSP's day: mostly single statuses, some batches, inbound messages, account updates.
    Mixed,
}

/// One request ready to send.
#[derive(Clone)]
pub struct Request {
    pub body: Bytes,
    /// `X-Hub-Signature-256` value.
    pub signature: String,
    /// Events bluetick makes of it (statuses + inbound messages + account updates).
    pub events: u32,
    /// Message id of a probe status (single status, unique), for end-to-end timing.
    pub probe_id: Option<String>,
}

/// Share of requests that repeat a recent request byte for byte.
const RECENT: usize = 256;

pub struct Traffic {
    secret: Vec<u8>,
    shape: Shape,
    duplicate_share: f64,
    reversed_share: f64,
    rng: fastrand::Rng,
    run: String,
    next_message: u64,
    /// Statuses still to report: (message seq, status, offset seconds, recipient).
    pending: VecDeque<(u64, &'static str, u64, u64)>,
    recent: VecDeque<Request>,
    probes: u64,
    counts: Counts,
}

/// Distinct events generated so far (exact duplicates not counted again), by table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Status updates, probes included.
    pub statuses: u64,
    pub inbound: u64,
    /// Template and quality updates (their natural keys may coincide within a second).
    pub account: u64,
}

impl Traffic {
    /// `run` tags every id; `seed` makes a run repeatable.
    pub fn new(secret: &[u8], shape: Shape, run: &str, seed: u64) -> Self {
        Traffic {
            secret: secret.to_vec(),
            shape,
            duplicate_share: 0.05,
            reversed_share: 0.10,
            rng: fastrand::Rng::with_seed(seed),
            run: run.to_string(),
            next_message: 0,
            pending: VecDeque::new(),
            recent: VecDeque::with_capacity(RECENT),
            probes: 0,
            counts: Counts::default(),
        }
    }

    /// Share of exact duplicates (0 to 1; default 0.05).
    pub fn duplicates(mut self, share: f64) -> Self {
        self.duplicate_share = share.clamp(0.0, 1.0);
        self
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    pub fn next_request(&mut self) -> Request {
        if !self.recent.is_empty() && self.rng.f64() < self.duplicate_share {
            let i = self.rng.usize(..self.recent.len());
            return self.recent[i].clone();
        }
        let request = match self.shape {
            Shape::Single => self.statuses(1),
            Shape::Batch100 => self.statuses(100),
            Shape::Batch1000 => self.statuses(1000),
            Shape::Mixed => match self.rng.u32(..100) {
                0..=79 => self.statuses(1),
                80..=86 => {
                    let n = self.rng.usize(2..=100);
                    self.statuses(n)
                }
                87..=96 => self.inbound(),
                _ => self.account_update(),
            },
        };
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(request.clone());
        request
    }

    /// A single `delivered` status with a unique id, never duplicated: its first appearance in
    /// ClickHouse times the whole pipeline.
    pub fn probe(&mut self) -> Request {
        self.probes += 1;
        self.counts.statuses += 1;
        let id = wamid(
            "919876544321",
            &format!("PROBE{}{:08X}", self.run, self.probes),
        );
        let mut s = String::with_capacity(512);
        envelope_open(&mut s, "102290129340398", "messages");
        s.push_str(r#""statuses":["#);
        let now = now_secs();
        write_status(&mut s, &id, "delivered", now, 919_876_544_321, None);
        s.push(']');
        envelope_close(&mut s);
        let mut request = self.sign(s, 1);
        request.probe_id = Some(id);
        request
    }

    fn statuses(&mut self, n: usize) -> Request {
        let (waba, phone_number_id) = business(self.rng.u32(..50));
        self.counts.statuses += n as u64;
        let mut s = String::with_capacity(256 + n * 330);
        envelope_open_with(&mut s, &waba, "messages", &phone_number_id);
        s.push_str(r#""statuses":["#);
        let now = now_secs();
        for i in 0..n {
            if i > 0 {
                s.push(',');
            }
            let (seq, status, offset, recipient) = self.next_status();
            let id = message_id(&self.run, seq, recipient);
            let error = (status == "failed").then(|| {
                [
                    (131026, "Message undeliverable"),
                    (131047, "Re-engagement message"),
                    (131049, "Meta chose not to deliver"),
                ][self.rng.usize(..3)]
            });
            let ts = now.saturating_sub(600).saturating_add(offset);
            write_status(&mut s, &id, status, ts, recipient, error);
        }
        s.push(']');
        envelope_close(&mut s);
        self.sign(s, n as u32)
    }

    /// Statuses of recent messages in the order Meta might send them: usually sent, delivered,
    /// read; for `reversed_share` of messages newest first.
    fn next_status(&mut self) -> (u64, &'static str, u64, u64) {
        if self.pending.len() < 64 {
            self.start_message();
        }
        let i = self.rng.usize(..self.pending.len().min(8));
        self.pending.remove(i).unwrap_or((0, "sent", 0, 0))
    }

    fn start_message(&mut self) {
        let seq = self.next_message;
        self.next_message += 1;
        let recipient = 919_000_000_000 + self.rng.u64(..100_000);
        let lifecycle: &[(&'static str, u64)] = match self.rng.u32(..100) {
            0..=2 => &[("sent", 0), ("failed", 5)],
            3..=29 => &[("sent", 0), ("delivered", 3)],
            30..=39 => &[("sent", 0), ("read", 40)],
            _ => &[("sent", 0), ("delivered", 3), ("read", 60)],
        };
        let reversed = self.rng.f64() < self.reversed_share;
        let mut steps: Vec<_> = lifecycle
            .iter()
            .map(|&(status, after)| (seq, status, after, recipient))
            .collect();
        if reversed {
            steps.reverse();
        }
        self.pending.extend(steps);
    }

    fn inbound(&mut self) -> Request {
        let (waba, phone_number_id) = business(self.rng.u32(..50));
        let from = 919_000_000_000 + self.rng.u64(..100_000);
        let seq = self.next_message;
        self.next_message += 1;
        self.counts.inbound += 1;
        let mut s = String::with_capacity(1024);
        envelope_open_with(&mut s, &waba, "messages", &phone_number_id);
        let _ = write!(
            s,
            r#""contacts":[{{"profile":{{"name":"Asha \u0936\u0930\u094d\u092e\u093e"}},"wa_id":"{from}"}}],"messages":[{{"from":"{from}","id":"{}","timestamp":"{}","#,
            message_id(&self.run, seq, from),
            now_secs().saturating_sub(5)
        );
        let content = match self.rng.u32(..100) {
            0..=59 => {
                let n = 3 + self.rng.usize(..40);
                format!(
                    r#""type":"text","text":{{"body":"{}"}}"#,
                    words(&mut self.rng, n)
                )
            }
            60..=74 => format!(
                r#""type":"image","image":{{"caption":"{}","mime_type":"image/jpeg","sha256":"{:064x}","id":"{}"}}"#,
                words(&mut self.rng, 4),
                self.rng.u64(..),
                1_000_000_000_000_000u64 + self.rng.u64(..1_000_000_000)
            ),
            75..=84 => format!(
                r#""context":{{"from":"15550783881","id":"{}"}},"type":"interactive","interactive":{{"type":"button_reply","button_reply":{{"id":"confirm-{seq}","title":"Yes, confirm"}}}}"#,
                message_id(&self.run, seq.saturating_sub(1), from)
            ),
            85..=89 => r#""type":"location","location":{"latitude":12.9716,"longitude":77.5946,"name":"Home","address":"12 MG Road, Bengaluru"}"#.to_string(),
            90..=94 => format!(
                r#""type":"reaction","reaction":{{"message_id":"{}","emoji":"\ud83d\udc4d"}}"#,
                message_id(&self.run, seq.saturating_sub(1), from)
            ),
            _ => format!(
                r#""type":"document","document":{{"filename":"invoice-{seq}.pdf","mime_type":"application/pdf","sha256":"{:064x}","id":"{}"}}"#,
                self.rng.u64(..),
                1_000_000_000_000_000u64 + self.rng.u64(..1_000_000_000)
            ),
        };
        s.push_str(&content);
        s.push_str("}]");
        envelope_close(&mut s);
        self.sign(s, 1)
    }

    fn account_update(&mut self) -> Request {
        let (waba, _) = business(self.rng.u32(..50));
        self.counts.account += 1;
        let template = self.rng.u64(..10_000);
        let (field, value) = if self.rng.bool() {
            (
                "message_template_status_update",
                format!(
                    r#"{{"event":"APPROVED","message_template_id":{},"message_template_name":"order_update_{template}","message_template_language":"en_US","reason":"NONE"}}"#,
                    900_000_000_000_000u64 + template
                ),
            )
        } else {
            (
                "phone_number_quality_update",
                r#"{"display_phone_number":"15550783881","event":"FLAGGED","current_limit":"TIER_10K"}"#
                    .to_string(),
            )
        };
        let s = format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"{waba}","time":{},"changes":[{{"value":{value},"field":"{field}"}}]}}]}}"#,
            now_secs()
        );
        self.sign(s, 1)
    }

    fn sign(&self, body: String, events: u32) -> Request {
        let signature = sign(&self.secret, body.as_bytes());
        Request {
            body: Bytes::from(body),
            signature,
            events,
            probe_id: None,
        }
    }
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body), as Meta sends it.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// One of 50 client businesses of the BSP: (WABA id, phone number id).
fn business(n: u32) -> (String, String) {
    (
        format!("1022901293{:05}", 40_000 + n),
        format!("1065403522{:05}", 42_000 + n),
    )
}

/// A message id as Meta makes them, unique per run and message: base64 of
/// `1c 18 <len> <recipient's digits> 15 02 00 11 18 <len> <tag> 00`, so the recipient's
/// number is inside in clear, exactly what bluetick must never store.
fn message_id(run: &str, seq: u64, recipient: u64) -> String {
    wamid(&recipient.to_string(), &format!("{run}{seq:016X}"))
}

/// A `wamid.` whose payload starts with `number` (as in Meta's) and ends with `tag`
/// (uppercase hex or letters, up to 60 bytes).
pub fn wamid(number: &str, tag: &str) -> String {
    use base64::Engine;
    let tag = &tag.as_bytes()[..tag.len().min(60)];
    let mut payload = vec![0x1c, 0x18, number.len() as u8];
    payload.extend_from_slice(number.as_bytes());
    payload.extend_from_slice(&[0x15, 0x02, 0x00, 0x11, 0x18, tag.len() as u8]);
    payload.extend_from_slice(tag);
    payload.push(0x00);
    format!(
        "wamid.{}",
        base64::engine::general_purpose::STANDARD.encode(payload)
    )
}

/// The pseudonym bluetick stores for a Meta id under `id_key`: the first 16 bytes of
/// HMAC-SHA256(id key, id), hex (the computation `bluetick message-key` documents).
pub fn pseudonym(id_key: &[u8], id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(id_key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

fn envelope_open(s: &mut String, waba: &str, field: &str) {
    envelope_open_with(s, waba, field, "106540352242922");
}

fn envelope_open_with(s: &mut String, waba: &str, field: &str, phone_number_id: &str) {
    let _ = write!(
        s,
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"{waba}","changes":[{{"field":"{field}","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550783881","phone_number_id":"{phone_number_id}"}},"#
    );
}

fn envelope_close(s: &mut String) {
    s.push_str("}}]}]}");
}

fn write_status(
    s: &mut String,
    id: &str,
    status: &str,
    ts: u64,
    recipient: u64,
    error: Option<(u32, &str)>,
) {
    let _ = write!(
        s,
        r#"{{"id":"{id}","status":"{status}","timestamp":"{ts}","recipient_id":"{recipient}","pricing":{{"billable":true,"pricing_model":"PMP","category":"{}","type":"regular"}}"#,
        ["marketing", "utility", "authentication", "service"][(recipient % 4) as usize]
    );
    if let Some((code, title)) = error {
        let _ = write!(
            s,
            r#","errors":[{{"code":{code},"title":"{title}","message":"{title}","error_data":{{"details":"{title}"}}}}]"#
        );
    }
    s.push('}');
}

fn words(rng: &mut fastrand::Rng, n: usize) -> String {
    const WORDS: [&str; 12] = [
        "hello", "order", "namaste", "please", "deliver", "tomorrow", "thanks", "price", "size",
        "invoice", "where", "today",
    ];
    let mut out = String::with_capacity(n * 8);
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[rng.usize(..WORDS.len())]);
    }
    out
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(r: &Request) -> serde_json::Value {
        serde_json::from_slice(&r.body).expect("generated body is JSON")
    }

    #[test]
    fn every_shape_is_valid_json_and_signed() {
        for shape in [
            Shape::Single,
            Shape::Batch100,
            Shape::Batch1000,
            Shape::Mixed,
        ] {
            let mut t = Traffic::new(b"s", shape, "r1", 7);
            let n = if shape == Shape::Batch1000 { 5 } else { 300 };
            for _ in 0..n {
                let r = t.next_request();
                let v = parse(&r);
                assert_eq!(v["object"], "whatsapp_business_account");
                assert_eq!(r.signature, sign(b"s", &r.body));
            }
        }
    }

    #[test]
    fn batch_counts_match_events() {
        let mut t = Traffic::new(b"s", Shape::Batch100, "r1", 1).duplicates(0.0);
        let r = t.next_request();
        let v = parse(&r);
        let n = v["entry"][0]["changes"][0]["value"]["statuses"]
            .as_array()
            .map_or(0, Vec::len);
        assert_eq!((n, r.events), (100, 100));
    }

    /// The ids are built the way Meta builds them: this is a real wamid's layout.
    #[test]
    fn wamids_carry_the_number_as_meta_s_do() {
        assert_eq!(
            wamid("15551234567", "7008F57BDBAC6BD9B5"),
            "wamid.HBgLMTU1NTEyMzQ1NjcVAgARGBI3MDA4RjU3QkRCQUM2QkQ5QjUA"
        );
        assert_eq!(pseudonym(b"k", "x").len(), 32);
    }

    #[test]
    fn mixed_has_duplicates_out_of_order_and_every_kind() {
        let mut t = Traffic::new(b"s", Shape::Mixed, "r1", 3);
        let mut bodies = std::collections::HashSet::new();
        let (mut dups, mut inbound, mut account) = (0, 0, 0);
        let mut first_status = std::collections::HashMap::new();
        let mut reversed = 0;
        for _ in 0..5000 {
            let r = t.next_request();
            if !bodies.insert(r.body.clone()) {
                dups += 1;
                continue;
            }
            let v = parse(&r);
            let value = &v["entry"][0]["changes"][0]["value"];
            inbound += value.get("messages").is_some() as u32;
            account += value.get("event").is_some() as u32;
            for s in value["statuses"].as_array().into_iter().flatten() {
                let id = s["id"].as_str().unwrap_or_default().to_string();
                let status = s["status"].as_str().unwrap_or_default().to_string();
                if first_status.insert(id, status.clone()).is_none() && status != "sent" {
                    reversed += 1;
                }
            }
        }
        assert!((150..400).contains(&dups), "about 5 % duplicates: {dups}");
        assert!(inbound > 300 && account > 50, "{inbound} {account}");
        assert!(
            reversed > 50,
            "some messages report newest first: {reversed}"
        );
    }

    #[test]
    fn probes_are_unique_single_statuses() {
        let mut t = Traffic::new(b"s", Shape::Mixed, "r9", 3);
        let (a, b) = (t.probe(), t.probe());
        assert_ne!(a.probe_id, b.probe_id);
        let v = parse(&a);
        assert_eq!(
            v["entry"][0]["changes"][0]["value"]["statuses"][0]["id"],
            a.probe_id.clone().unwrap_or_default().as_str()
        );
    }
}
