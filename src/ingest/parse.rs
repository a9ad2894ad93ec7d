//! Verified body → events: parse in place with simd-json, then split each webhook into one
//! [`Event`] per status, inbound message, error or account update, masking and hashing
//! people and keying Meta's ids as the event is built.
//!
//! Invariants: `split` emits every change it is given — unknown `field`s become `other`
//! events; a phone number or user id reaches an `Event` only as a keyed hash (the number also
//! masked, through [`Person::protect`]); a Meta id only as its pseudonym under the id key.

use crate::model::webhook::{Change, Contact, ErrorInfo, InboundMessage, Status};
use crate::model::{Event, EventId, EventKind, Text, Webhook, EVENT_VERSION};
use crate::privacy::person::is_user_id;
use crate::privacy::{IdKey, Pepper, Person};
use std::borrow::Cow;

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("body is not a WhatsApp webhook: {0}")]
    Json(#[from] simd_json::Error),
}

/// Parses `body` in place; the returned webhook borrows from it.
pub fn parse(body: &mut [u8]) -> Result<Webhook<'_>, ParseError> {
    Ok(Webhook::parse(body)?)
}

/// What every event of one request shares.
pub struct SplitContext<'p> {
    pub pepper: &'p Pepper,
    pub id_key: &'p IdKey,
    pub received_ms: u64,
}

/// Calls `emit` once per event of `hook`, in payload order; stops at the first error.
/// Returns how many events were emitted.
pub fn split<'w, E>(
    hook: &'w Webhook<'_>,
    ctx: &SplitContext<'_>,
    mut emit: impl FnMut(&Event<'w>) -> Result<(), E>,
) -> Result<usize, E> {
    let mut count = 0;
    let received_s = ctx.received_ms / 1000;
    for entry in &hook.entry {
        let entry_time = entry.time.as_ref().and_then(Text::as_u64);
        let entry_time_text = entry.time.as_ref().map_or("", Text::as_str);
        for (index, change) in entry.changes.iter().enumerate() {
            let base = Event {
                v: EVENT_VERSION,
                received_ms: ctx.received_ms,
                ts: entry_time.unwrap_or(received_s),
                waba_id: borrow(&entry.id),
                field: borrow(&change.field),
                ..Event::default()
            };
            let mut index_buf = itoa::Buffer::new();
            let key = ChangeKey {
                entry_time: entry_time_text,
                index: index_buf.format(index),
            };
            count += split_change(change, base, &key, ctx, &mut emit)?;
        }
    }
    Ok(count)
}

/// What identifies a change that carries no id of its own (Meta retries send it unchanged).
struct ChangeKey<'k> {
    entry_time: &'k str,
    index: &'k str,
}

fn split_change<'w, E>(
    change: &'w Change<'_>,
    mut base: Event<'w>,
    key: &ChangeKey<'_>,
    ctx: &SplitContext<'_>,
    emit: &mut impl FnMut(&Event<'w>) -> Result<(), E>,
) -> Result<usize, E> {
    let v = &change.value;
    let kind = match change.field.as_str() {
        "messages" => return split_messages(change, base, key, ctx, emit),
        "message_template_status_update" => EventKind::TemplateStatus,
        "message_template_quality_update" => EventKind::TemplateQuality,
        "phone_number_quality_update" => EventKind::PhoneQuality,
        "account_update" => EventKind::AccountUpdate,
        _ => EventKind::Other,
    };
    base.kind = kind;
    base.update_event = opt(&v.event);
    if kind != EventKind::Other {
        base.template_id = opt(&v.message_template_id);
        base.template_name = opt(&v.message_template_name);
        base.template_language = opt(&v.message_template_language);
        base.reason = opt(&v.reason);
        base.previous_quality = opt(&v.previous_quality_score);
        base.new_quality = opt(&v.new_quality_score);
        base.current_limit = opt(&v.current_limit);
        base.display_phone_number = opt(&v.display_phone_number).or(opt(&v.phone_number));
    }
    let template = base.template_id.as_deref().unwrap_or("");
    let event = base.update_event.as_deref().unwrap_or("");
    base.id = EventId::derive(
        kind,
        &[
            &base.waba_id,
            &base.field,
            template,
            event,
            key.entry_time,
            key.index,
        ],
    );
    emit(&base)?;
    Ok(1)
}

fn split_messages<'w, E>(
    change: &'w Change<'_>,
    mut base: Event<'w>,
    key: &ChangeKey<'_>,
    ctx: &SplitContext<'_>,
    emit: &mut impl FnMut(&Event<'w>) -> Result<(), E>,
) -> Result<usize, E> {
    let v = &change.value;
    if let Some(m) = &v.metadata {
        base.phone_number_id = opt(&m.phone_number_id);
        base.display_phone_number = opt(&m.display_phone_number);
    }
    for s in &v.statuses {
        emit(&status_event(s, &base, &v.contacts, ctx))?;
    }
    for m in &v.messages {
        emit(&message_event(m, &base, &v.contacts, ctx))?;
    }
    for (i, err) in v.errors.iter().enumerate() {
        let mut e = base.clone();
        e.kind = EventKind::Error;
        (e.error_code, e.error_title) = error_fields(std::slice::from_ref(err));
        let mut i_buf = itoa::Buffer::new();
        let code = err.code.as_ref().map_or("", Text::as_str);
        let pn = e.phone_number_id.as_deref().unwrap_or("");
        e.id = EventId::derive(
            EventKind::Error,
            &[
                &e.waba_id,
                pn,
                code,
                key.entry_time,
                key.index,
                i_buf.format(i),
            ],
        );
        emit(&e)?;
    }
    let emitted = v.statuses.len() + v.messages.len() + v.errors.len();
    if emitted == 0 {
        // A `messages` change with nothing bluetick reads is still kept, as `other`.
        base.kind = EventKind::Other;
        base.id = EventId::derive(
            EventKind::Other,
            &[&base.waba_id, &base.field, key.entry_time, key.index],
        );
        emit(&base)?;
        return Ok(1);
    }
    Ok(emitted)
}

fn status_event<'w>(
    s: &'w Status<'_>,
    base: &Event<'w>,
    contacts: &[Contact<'_>],
    ctx: &SplitContext<'_>,
) -> Event<'w> {
    let mut e = base.clone();
    e.kind = EventKind::Status;
    let key = ctx.id_key.pseudonym(s.id.as_str());
    e.message_key = Some(key);
    e.status = Some(borrow(&s.status));
    e.recipient_type = opt(&s.recipient_type);
    e.ts = s
        .timestamp
        .as_ref()
        .and_then(Text::as_u64)
        .unwrap_or(base.ts);
    // A group is not a person: its id is not kept as one.
    if e.recipient_type.as_deref() != Some("group") {
        let ids = Ids {
            phone_or_user: nonempty(&s.recipient_id),
            user: nonempty(&s.recipient_user_id).or(nonempty(&s.user_id)),
            parent: nonempty(&s.recipient_parent_user_id).or(nonempty(&s.parent_user_id)),
        };
        set_person(&mut e, ids.or_contact(contacts), ctx);
    }
    if let Some(c) = &s.conversation {
        e.conversation_id = opt(&c.id);
        e.conversation_expiration_ts = c.expiration_timestamp.as_ref().and_then(Text::as_u64);
        e.conversation_origin = c.origin.as_ref().and_then(|o| opt(&o.kind));
    }
    if let Some(p) = &s.pricing {
        e.pricing_model = opt(&p.pricing_model);
        e.pricing_category = opt(&p.category);
        e.pricing_type = opt(&p.kind);
        e.billable = p.billable.as_ref().and_then(as_bool);
    }
    (e.error_code, e.error_title) = error_fields(&s.errors);
    let ts = s.timestamp.as_ref().map_or("", Text::as_str);
    e.id = EventId::derive(
        EventKind::Status,
        &[key.to_hex().as_str(), s.status.as_str(), ts],
    );
    e
}

fn message_event<'w>(
    m: &'w InboundMessage<'_>,
    base: &Event<'w>,
    contacts: &[Contact<'_>],
    ctx: &SplitContext<'_>,
) -> Event<'w> {
    let mut e = base.clone();
    e.kind = EventKind::Message;
    let key = ctx.id_key.pseudonym(m.id.as_str());
    e.message_key = Some(key);
    e.message_type = opt(&m.kind);
    e.ts = m
        .timestamp
        .as_ref()
        .and_then(Text::as_u64)
        .unwrap_or(base.ts);
    let ids = Ids {
        phone_or_user: nonempty(&m.from),
        user: nonempty(&m.from_user_id).or(nonempty(&m.user_id)),
        parent: nonempty(&m.from_parent_user_id).or(nonempty(&m.parent_user_id)),
    };
    set_person(&mut e, ids.or_contact(contacts), ctx);
    if let Some(c) = &m.context {
        e.context_message_key = nonempty(&c.id).map(|id| ctx.id_key.pseudonym(id));
        let flag = |t: &Option<Text>| t.as_ref().and_then(as_bool).unwrap_or(false);
        e.forwarded = Some(flag(&c.forwarded) || flag(&c.frequently_forwarded));
    }
    e.from_ad = Some(m.referral.is_some());
    (e.error_code, e.error_title) = error_fields(&m.errors);
    e.id = EventId::derive(EventKind::Message, &[key.to_hex().as_str()]);
    e
}

/// The identifiers Meta gave for the person of one status or message.
struct Ids<'t> {
    /// `recipient_id` / `from`: a phone number, or a user id for users without one.
    phone_or_user: Option<&'t str>,
    user: Option<&'t str>,
    parent: Option<&'t str>,
}

impl<'t> Ids<'t> {
    /// Fills in user ids from the change's `contacts[]`: from the contact with the same
    /// number or user id, or, for an item that names nobody itself, from the only contact.
    /// Never from another person's contact.
    fn or_contact(mut self, contacts: &'t [Contact<'_>]) -> Self {
        if self.user.is_some() && self.parent.is_some() {
            return self;
        }
        let same = |c: &&Contact| {
            let eq = |a: Option<&str>, b: Option<&str>| a.is_some() && a == b;
            eq(self.phone_or_user, nonempty(&c.wa_id))
                || eq(self.user.or(self.phone_or_user), nonempty(&c.user_id))
        };
        let anonymous = self.phone_or_user.is_none() && self.user.is_none();
        let contact = contacts.iter().find(same).or_else(|| {
            contacts
                .first()
                .filter(|_| anonymous && contacts.len() == 1)
        });
        if let Some(c) = contact {
            self.user = self.user.or(nonempty(&c.user_id));
            self.parent = self.parent.or(nonempty(&c.parent_user_id));
        }
        self
    }
}

/// Keeps a person as keyed hashes only: the number masked and hashed, user ids hashed. A
/// `recipient_id`/`from` shaped like a user id is one, not digits to mask.
fn set_person(e: &mut Event<'_>, ids: Ids<'_>, ctx: &SplitContext<'_>) {
    let mut user = ids.user;
    if let Some(raw) = ids.phone_or_user {
        if is_user_id(raw) {
            user = user.or(Some(raw));
        } else {
            let person = Person::protect(ctx.pepper, raw);
            e.person_masked = Some(person.masked);
            e.person_hash = Some(person.hash);
        }
    }
    e.user_hash = user.map(|u| ctx.pepper.hash_user(u));
    e.parent_user_hash = ids.parent.map(|u| ctx.pepper.hash_user(u));
}

fn nonempty<'t>(t: &'t Option<Text<'_>>) -> Option<&'t str> {
    t.as_ref().map(Text::as_str).filter(|s| !s.is_empty())
}

/// The first error's code and title; later ones are rare and repeat the first.
fn error_fields<'w>(errors: &'w [ErrorInfo<'_>]) -> (Option<i64>, Option<Cow<'w, str>>) {
    match errors.first() {
        Some(err) => (err.code.as_ref().and_then(Text::as_i64), opt(&err.title)),
        None => (None, None),
    }
}

fn as_bool(t: &Text<'_>) -> Option<bool> {
    match t.as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn borrow<'w>(t: &'w Text<'_>) -> Cow<'w, str> {
    Cow::Borrowed(t.as_str())
}

fn opt<'w>(t: &'w Option<Text<'_>>) -> Option<Cow<'w, str>> {
    t.as_ref().filter(|t| !t.is_empty()).map(borrow)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &[(&str, &str)] = &[
        (
            "status_sent",
            include_str!("../../tests/fixtures/status_sent.json"),
        ),
        (
            "status_read_pmp",
            include_str!("../../tests/fixtures/status_read_pmp.json"),
        ),
        (
            "status_failed",
            include_str!("../../tests/fixtures/status_failed.json"),
        ),
        (
            "inbound_mix",
            include_str!("../../tests/fixtures/inbound_mix.json"),
        ),
        ("updates", include_str!("../../tests/fixtures/updates.json")),
        (
            "value_errors",
            include_str!("../../tests/fixtures/value_errors.json"),
        ),
    ];
    const ID_KEY: &[u8] = b"test-id-key-0123456789";

    /// Customer numbers that appear in the fixtures and must never leave masked.
    const CUSTOMERS: &[&str] = &[
        "15551234567",
        "919876544321",
        "447700900123",
        "919000012345",
    ];

    fn events_json(fixture: &str) -> Vec<serde_json::Value> {
        let pepper = Pepper::new(b"test-pepper-0123456789");
        let id_key = IdKey::new(ID_KEY);
        let ctx = SplitContext {
            pepper: &pepper,
            id_key: &id_key,
            received_ms: 1_750_040_000_123,
        };
        let mut body = fixture.as_bytes().to_vec();
        let hook = parse(&mut body).expect("fixture parses");
        let mut out = Vec::new();
        split(&hook, &ctx, |e| {
            out.push(serde_json::to_value(e).expect("serializes"));
            Ok::<_, ()>(())
        })
        .expect("split");
        out
    }

    /// One string field of every event, in order.
    fn column<'e>(events: &'e [serde_json::Value], name: &str) -> Vec<&'e str> {
        events
            .iter()
            .map(|e| e[name].as_str().unwrap_or(""))
            .collect()
    }

    fn fixture(name: &str) -> &'static str {
        FIXTURES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
            .expect("fixture")
    }

    #[test]
    fn a_status_keeps_its_metadata_and_masks_the_recipient() {
        let events = events_json(fixture("status_sent"));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e["kind"], "status");
        assert_eq!(e["status"], "sent");
        assert_eq!(e["ts"], 1_750_030_073);
        assert_eq!(e["waba_id"], "102290129340398");
        assert_eq!(e["phone_number_id"], "106540352242922");
        assert_eq!(e["person_masked"], "15XXXXX4567");
        let hash = Pepper::new(b"test-pepper-0123456789").hash_phone("15551234567");
        assert_eq!(e["person_hash"], hash.to_hex().as_str());
        assert_eq!(e["conversation_origin"], "marketing");
        assert_eq!(e["conversation_expiration_ts"], 1_750_116_480);
        assert_eq!(e["pricing_model"], "CBP");
        assert_eq!(e["billable"], true);
        assert_eq!(e["received_ms"], 1_750_040_000_123u64);
    }

    #[test]
    fn meta_ids_become_their_keyed_pseudonyms() {
        let e = &events_json(fixture("status_sent"))[0];
        let wamid = "wamid.HBgLMTU1NTEyMzQ1NjcVAgARGBI3MDA4RjU3QkRCQUM2QkQ5QjUA";
        let key = IdKey::new(ID_KEY).pseudonym(wamid);
        assert_eq!(e["message_key"], key.to_hex().as_str());
        for (name, body) in FIXTURES {
            for e in events_json(body) {
                for (field, value) in e.as_object().expect("object") {
                    let Some(text) = value.as_str() else { continue };
                    if [
                        "waba_id",
                        "phone_number_id",
                        "display_phone_number",
                        "template_id",
                    ]
                    .contains(&field.as_str())
                    {
                        continue; // the business's own identifiers
                    }
                    let hit = crate::privacy::detect::scan(text);
                    assert!(hit.is_none(), "{name}.{field}: {hit:?}");
                }
            }
        }
    }

    /// A user who adopted a username: no number, only business-scoped user ids, which are
    /// hashed (never masked as digits); a group recipient is not a person.
    #[test]
    fn people_without_numbers_and_groups() {
        let body = r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{
            "contacts":[{"profile":{"name":"SECRET-NAME","username":"@secret"},"user_id":"US.13491208655302741918","parent_user_id":"US.ENT.11815799212886844830"}],
            "messages":[{"id":"wamid.a","timestamp":"1750000000","type":"text","text":{"body":"SECRET"}}],
            "statuses":[
              {"id":"wamid.b","status":"read","timestamp":"1750000001","recipient_id":"US.999999999999","recipient_user_id":"US.999999999999"},
              {"id":"wamid.c","status":"sent","timestamp":"1750000002","recipient_id":"120363040000000000@g.us","recipient_type":"group"}
            ]}}]}]}"#;
        let events = events_json(body);
        let pepper = Pepper::new(b"test-pepper-0123456789");
        let user = |id: &str| pepper.hash_user(id).to_hex().as_str().to_string();
        let (read, group, inbound) = (&events[0], &events[1], &events[2]);
        assert_eq!(inbound["user_hash"], user("US.13491208655302741918"));
        assert_eq!(
            inbound["parent_user_hash"],
            user("US.ENT.11815799212886844830")
        );
        assert!(inbound.get("person_hash").is_none() && inbound.get("person_masked").is_none());
        assert_eq!(read["user_hash"], user("US.999999999999"));
        assert!(
            read.get("person_masked").is_none(),
            "a user id is not digits to mask"
        );
        assert_eq!(group["recipient_type"], "group");
        for k in ["person_hash", "person_masked", "user_hash"] {
            assert!(group.get(k).is_none(), "{k}: {group}");
        }
        let text = serde_json::to_string(&events).expect("json");
        for marker in ["SECRET", "@secret", "US.", "120363040000000000"] {
            assert!(!text.contains(marker), "{marker} in {text}");
        }
    }

    /// `null` or another type where the model expects a list or an object: the webhook
    /// still parses, the field reads as absent, the rest is kept.
    #[test]
    fn changed_types_in_fields_we_do_not_need_are_not_failures() {
        let body = r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{
            "metadata": "odd", "contacts": null,
            "messages":[{"from":"919876544321","id":"wamid.a","timestamp":"1750000000","type":"text",
                "errors":null,"context":"SECRET-CONTEXT","text":{"body":"SECRET"}}, 7, null],
            "statuses":[{"id":"wamid.b","status":"sent","recipient_id":"919876544321","pricing":[1,2],
                "conversation":null,"errors":{"code":1}}]}}, "junk"]}, 5]}"#;
        let events = events_json(body);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["status"], "sent");
        assert!(events[0].get("pricing_category").is_none());
        assert_eq!(events[1]["message_type"], "text");
        assert_eq!(events[1]["person_masked"], "91XXXXXX4321");
        assert!(!serde_json::to_string(&events)
            .expect("json")
            .contains("SECRET"));
    }

    #[test]
    fn failed_statuses_keep_code_and_title_only() {
        let e = &events_json(fixture("status_failed"))[0];
        assert_eq!(e["error_code"], 131_026);
        assert_eq!(e["error_title"], "Message undeliverable");
    }

    #[test]
    fn every_inbound_type_becomes_one_message_event() {
        let events = events_json(fixture("inbound_mix"));
        let types = column(&events, "message_type");
        assert_eq!(
            types,
            [
                "text",
                "image",
                "location",
                "contacts",
                "interactive",
                "reaction",
                "text",
                "order",
                "system",
                "unsupported"
            ]
        );
        assert!(events
            .iter()
            .all(|e| e["kind"] == "message" && e["person_masked"] == "91XXXXXX4321"));
        assert_eq!(events[1]["forwarded"], true);
        assert_eq!(events[6]["from_ad"], true);
        assert_eq!(events[0]["from_ad"], false);
        assert_eq!(events[9]["error_code"], 131_051);
    }

    #[test]
    fn updates_and_unknown_fields_are_kept() {
        let events = events_json(fixture("updates"));
        let kinds = column(&events, "kind");
        assert_eq!(
            kinds,
            [
                "template_status",
                "template_quality",
                "phone_quality",
                "account_update",
                "other"
            ]
        );
        assert_eq!(events[0]["template_id"], "1258429988523040");
        assert_eq!(events[0]["update_event"], "APPROVED");
        assert_eq!(events[1]["new_quality"], "YELLOW");
        assert_eq!(events[2]["current_limit"], "TIER_1K");
        assert_eq!(events[4]["field"], "brand_new_field");
        assert!(events.iter().all(|e| e["ts"] == 1_750_032_000));
    }

    #[test]
    fn value_level_errors_are_events() {
        let events = events_json(fixture("value_errors"));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["kind"], "error");
        assert_eq!(events[0]["error_code"], 131_047);
    }

    #[test]
    fn no_content_and_no_number_survives_any_fixture() {
        for (name, body) in FIXTURES {
            for e in events_json(body) {
                let text = e.to_string();
                assert!(!text.contains("SECRET"), "{name}: content leaked: {text}");
                for n in CUSTOMERS {
                    assert!(!text.contains(n), "{name}: number {n} leaked: {text}");
                }
            }
        }
    }

    #[test]
    fn retries_of_a_webhook_give_the_same_ids_and_distinct_updates_differ() {
        let first = events_json(fixture("status_read_pmp"));
        let again = events_json(fixture("status_read_pmp"));
        assert_eq!(first[0]["id"], again[0]["id"]);
        assert_ne!(first[0]["id"], first[1]["id"]);
        for (name, body) in FIXTURES {
            let ids: std::collections::HashSet<String> = events_json(body)
                .iter()
                .map(|e| e["id"].to_string())
                .collect();
            assert_eq!(ids.len(), events_json(body).len(), "{name}: ids collide");
        }
    }

    #[test]
    fn serde_json_reads_the_same_typed_structs() {
        for (name, body) in FIXTURES {
            let hook: Webhook = serde_json::from_str(body).expect("serde_json parses");
            let mut simd_body = body.as_bytes().to_vec();
            let simd = parse(&mut simd_body).expect("simd parses");
            assert_eq!(format!("{hook:?}"), format!("{simd:?}"), "{name}");
        }
    }

    #[test]
    fn bodies_that_are_not_webhooks_fail_to_parse() {
        for bad in [
            &b"not json"[..],
            b"{\"entry\": 5}",
            b"[]",
            b"{\"object\":\"x\"}",
        ] {
            let mut b = bad.to_vec();
            assert!(parse(&mut b).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let mut empty = br#"{"object":"whatsapp_business_account","entry":[]}"#.to_vec();
        assert_eq!(parse(&mut empty).map(|h| h.entry.len()).ok(), Some(0));
    }
}
