//! Verified body → events: parse in place with simd-json, then split each webhook into one
//! [`Event`] per status, inbound message, error or account update, masking and hashing
//! people and keying Meta's ids as the event is built.
//!
//! Invariants: `split` emits every change it is given — unknown `field`s become `other`
//! events; a phone number or user id reaches an `Event` only as a keyed hash (the number also
//! masked, through [`Person::protect`]); a Meta id only as its pseudonym under the id key.

use super::tenants::TenantMap;
use crate::model::webhook::{
    Call, Change, Contact, ErrorInfo, InboundMessage, Status, UserPreference,
};
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
    /// The client businesses of WABAs and numbers; none: events carry no tenant.
    pub tenants: Option<&'p TenantMap>,
}

/// Calls `emit` once per event of `hook`, in payload order; stops at the first error.
/// Returns how many events were emitted.
pub fn split<'w, 'p: 'w, E>(
    hook: &'w Webhook<'_>,
    ctx: &SplitContext<'p>,
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

fn split_change<'w, 'p: 'w, E>(
    change: &'w Change<'_>,
    mut base: Event<'w>,
    key: &ChangeKey<'_>,
    ctx: &SplitContext<'p>,
    emit: &mut impl FnMut(&Event<'w>) -> Result<(), E>,
) -> Result<usize, E> {
    let v = &change.value;
    if let Some(m) = &v.metadata {
        base.phone_number_id = opt(&m.phone_number_id);
        base.display_phone_number = opt(&m.display_phone_number);
    }
    base.tenant = ctx
        .tenants
        .and_then(|t| t.tenant(&base.waba_id, base.phone_number_id.as_deref()))
        .map(Cow::Borrowed);
    let kind = match change.field.as_str() {
        "messages" => return split_messages(change, base, key, ctx, emit),
        "calls" => return split_calls(change, base, ctx, emit),
        "user_preferences" if !v.user_preferences.is_empty() => {
            return split_preferences(change, base, ctx, emit)
        }
        "message_template_status_update" => EventKind::TemplateStatus,
        "message_template_quality_update" => EventKind::TemplateQuality,
        "template_category_update" => EventKind::TemplateCategory,
        "message_template_components_update" => EventKind::TemplateComponents,
        "phone_number_quality_update" => EventKind::PhoneQuality,
        "phone_number_name_update" => EventKind::PhoneName,
        "account_update" => EventKind::AccountUpdate,
        "account_alerts" => EventKind::AccountAlert,
        "account_review_update" => EventKind::AccountReview,
        "business_capability_update" => EventKind::BusinessCapability,
        _ => EventKind::Other,
    };
    base.kind = kind;
    base.update_event = opt(&v.event);
    if kind == EventKind::Other {
        // Coexistence traffic (the business app beside the API) is counted, never read.
        let items = v.message_echoes.max(v.history).max(v.state_sync);
        base.item_count = (items > 0).then_some(items);
    } else {
        account_fields(&mut base, v);
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

/// The typed fields of template, quality, number and account updates: codes, categories,
/// decisions and limits. Prose (descriptions, recommendations, template text) and names are
/// never read.
fn account_fields<'w>(e: &mut Event<'w>, v: &'w crate::model::webhook::Value<'_>) {
    e.template_id = opt(&v.message_template_id);
    e.template_name = opt(&v.message_template_name);
    e.template_language = opt(&v.message_template_language);
    e.template_category = opt(&v.message_template_category);
    e.reason = opt(&v.reason).or_else(|| v.rejection_info.as_ref().and_then(|r| opt(&r.reason)));
    e.pause_title = v.other_info.as_ref().and_then(|o| opt(&o.title));
    e.previous_category = opt(&v.previous_category);
    e.new_category = opt(&v.new_category);
    e.correct_category = opt(&v.correct_category);
    e.previous_quality = opt(&v.previous_quality_score);
    e.new_quality = opt(&v.new_quality_score);
    e.current_limit = opt(&v.current_limit);
    e.max_daily_conversations =
        opt(&v.max_daily_conversations_per_business).or(opt(&v.max_daily_conversation_per_phone));
    e.display_phone_number = opt(&v.display_phone_number)
        .or(opt(&v.phone_number))
        .or(e.display_phone_number.take());
    if let Some(a) = &v.alert_info {
        e.alert_type = opt(&a.alert_type);
        e.alert_severity = opt(&a.alert_severity);
        e.alert_status = opt(&a.alert_status);
    }
    e.decision = opt(&v.decision);
    e.violation_type = v
        .violation_info
        .as_ref()
        .and_then(|i| opt(&i.violation_type));
    e.ban_state = v.ban_info.as_ref().and_then(|b| opt(&b.waba_ban_state));
}

/// `calls`: one event per call connecting or ending, and per call status.
fn split_calls<'w, E>(
    change: &'w Change<'_>,
    base: Event<'w>,
    ctx: &SplitContext<'_>,
    emit: &mut impl FnMut(&Event<'w>) -> Result<(), E>,
) -> Result<usize, E> {
    let v = &change.value;
    for c in &v.calls {
        emit(&call_event(c, &base, &v.contacts, ctx))?;
    }
    for s in &v.statuses {
        let mut e = status_event(s, &base, &v.contacts, ctx);
        e.kind = EventKind::CallStatus;
        let ts = s.timestamp.as_ref().map_or("", Text::as_str);
        let call = e.message_key.map(|k| k.to_hex());
        let call = call.as_ref().map_or("", |h| h.as_str());
        e.id = EventId::derive(EventKind::CallStatus, &[call, s.status.as_str(), ts]);
        emit(&e)?;
    }
    Ok(v.calls.len() + v.statuses.len())
}

fn call_event<'w>(
    c: &'w Call<'_>,
    base: &Event<'w>,
    contacts: &[Contact<'_>],
    ctx: &SplitContext<'_>,
) -> Event<'w> {
    let mut e = item_of(base);
    e.kind = EventKind::Call;
    let key = ctx.id_key.pseudonym(c.id.as_str());
    e.message_key = Some(key);
    e.update_event = opt(&c.event);
    e.status = opt(&c.status);
    e.direction = opt(&c.direction);
    e.ts = c
        .timestamp
        .as_ref()
        .and_then(Text::as_u64)
        .unwrap_or(base.ts);
    e.call_start_ts = c.start_time.as_ref().and_then(Text::as_u64);
    e.call_end_ts = c.end_time.as_ref().and_then(Text::as_u64);
    e.call_duration_s = c.duration.as_ref().and_then(Text::as_u64);
    // The customer is the caller of a call they started, the callee of one the business did.
    let business_called = e.direction.as_deref() == Some("BUSINESS_INITIATED");
    let (person, user) = if business_called {
        (&c.to, &c.to_user_id)
    } else {
        (&c.from, &c.from_user_id)
    };
    let ids = Ids {
        phone_or_user: nonempty(person),
        user: nonempty(user),
        parent: None,
    };
    set_person(&mut e, ids.or_contact(contacts), ctx);
    (e.error_code, e.error_title) = error_fields(&c.errors);
    let ts = c.timestamp.as_ref().map_or("", Text::as_str);
    let event = e.update_event.as_deref().unwrap_or("");
    e.id = EventId::derive(EventKind::Call, &[key.to_hex().as_str(), event, ts]);
    e
}

/// `user_preferences`: one event per customer stopping or resuming a category of messages.
fn split_preferences<'w, E>(
    change: &'w Change<'_>,
    base: Event<'w>,
    ctx: &SplitContext<'_>,
    emit: &mut impl FnMut(&Event<'w>) -> Result<(), E>,
) -> Result<usize, E> {
    let v = &change.value;
    for p in &v.user_preferences {
        emit(&preference_event(p, &base, &v.contacts, ctx))?;
    }
    Ok(v.user_preferences.len())
}

fn preference_event<'w>(
    p: &'w UserPreference<'_>,
    base: &Event<'w>,
    contacts: &[Contact<'_>],
    ctx: &SplitContext<'_>,
) -> Event<'w> {
    let mut e = item_of(base);
    e.kind = EventKind::OptOut;
    e.preference_category = opt(&p.category);
    e.preference = opt(&p.value);
    e.ts = p
        .timestamp
        .as_ref()
        .and_then(Text::as_u64)
        .unwrap_or(base.ts);
    let ids = Ids {
        phone_or_user: nonempty(&p.wa_id),
        user: nonempty(&p.user_id),
        parent: None,
    };
    set_person(&mut e, ids.or_contact(contacts), ctx);
    let who = e.person_hash.or(e.user_hash).map(|h| h.to_hex());
    let ts = p.timestamp.as_ref().map_or("", Text::as_str);
    e.id = EventId::derive(
        EventKind::OptOut,
        &[
            who.as_ref().map_or("", |h| h.as_str()),
            e.preference_category.as_deref().unwrap_or(""),
            e.preference.as_deref().unwrap_or(""),
            ts,
        ],
    );
    e
}

fn split_messages<'w, E>(
    change: &'w Change<'_>,
    mut base: Event<'w>,
    key: &ChangeKey<'_>,
    ctx: &SplitContext<'_>,
    emit: &mut impl FnMut(&Event<'w>) -> Result<(), E>,
) -> Result<usize, E> {
    let v = &change.value;
    for s in &v.statuses {
        emit(&status_event(s, &base, &v.contacts, ctx))?;
    }
    for m in &v.messages {
        emit(&message_event(m, &base, &v.contacts, ctx))?;
    }
    for (i, err) in v.errors.iter().enumerate() {
        let mut e = item_of(&base);
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
    let mut e = item_of(base);
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
    let mut e = item_of(base);
    e.kind = EventKind::Message;
    let key = ctx.id_key.pseudonym(m.id.as_str());
    e.message_key = Some(key);
    e.message_type = m.kind().map(Cow::Borrowed);
    e.message_subtype = m
        .interactive
        .as_ref()
        .or(m.system.as_ref())
        .and_then(|t| opt(&t.kind));
    e.target_message_key = [&m.reaction, &m.edit, &m.revoke]
        .into_iter()
        .flatten()
        .find_map(|t| nonempty(&t.message_id).or(nonempty(&t.original_message_id)))
        .map(|id| ctx.id_key.pseudonym(id));
    e.group_key = nonempty(&m.group_id).map(|id| ctx.id_key.pseudonym(id));
    if let Some(r) = &m.referral {
        e.ad_source_type = opt(&r.source_type);
        e.ad_source_id = opt(&r.source_id);
        e.ad_click_key = nonempty(&r.ctwa_clid).map(|id| ctx.id_key.pseudonym(id));
    }
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

/// A new event for one item of a change, with what the change gives every item (times, the
/// WABA, the business number, the tenant). Built field by field rather than cloned: an event
/// has some sixty optional fields, and cloning each per status was a third of `split`'s time.
fn item_of<'w>(base: &Event<'w>) -> Event<'w> {
    Event {
        v: base.v,
        received_ms: base.received_ms,
        ts: base.ts,
        waba_id: base.waba_id.clone(),
        field: base.field.clone(),
        phone_number_id: base.phone_number_id.clone(),
        display_phone_number: base.display_phone_number.clone(),
        tenant: base.tenant.clone(),
        ..Event::default()
    }
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
            e.country_code = person.country_code.map(Cow::Borrowed);
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
        ("calls", include_str!("../../tests/fixtures/calls.json")),
        (
            "user_preferences",
            include_str!("../../tests/fixtures/user_preferences.json"),
        ),
        (
            "template_lifecycle",
            include_str!("../../tests/fixtures/template_lifecycle.json"),
        ),
        (
            "account_health",
            include_str!("../../tests/fixtures/account_health.json"),
        ),
        (
            "inbound_detail",
            include_str!("../../tests/fixtures/inbound_detail.json"),
        ),
    ];
    const ID_KEY: &[u8] = b"test-id-key-0123456789";

    /// Customer numbers that appear in the fixtures and must never leave masked.
    const CUSTOMERS: &[&str] = &[
        "15551234567",
        "919876544321",
        "447700900123",
        "919000012345",
        "919812345670",
        "447700900456",
        "5511987650001",
        // Network addresses in a call's SDP, a location's coordinates, a group id.
        "192.0.2.44",
        "12.9715987",
        "120363040000000001",
    ];

    fn events_json(fixture: &str) -> Vec<serde_json::Value> {
        let pepper = Pepper::new(b"test-pepper-0123456789");
        let id_key = IdKey::new(ID_KEY);
        let ctx = SplitContext {
            pepper: &pepper,
            id_key: &id_key,
            received_ms: 1_750_040_000_123,
            tenants: None,
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
                    if crate::model::tables::BUSINESS_ID_COLUMNS.contains(&field.as_str()) {
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

    fn key_of(id: &str) -> String {
        IdKey::new(ID_KEY)
            .pseudonym(id)
            .to_hex()
            .as_str()
            .to_string()
    }

    #[test]
    fn calls_keep_direction_outcome_and_duration_and_the_customer_as_a_hash() {
        let events = events_json(fixture("calls"));
        let kinds = column(&events, "kind");
        assert_eq!(
            kinds,
            ["call", "call", "call", "call_status", "call_status"]
        );
        let (connect, done, failed) = (&events[0], &events[1], &events[2]);
        assert_eq!(connect["update_event"], "connect");
        assert_eq!(connect["direction"], "USER_INITIATED");
        assert_eq!(done["update_event"], "terminate");
        assert_eq!(done["status"], "COMPLETED");
        assert_eq!(
            (
                &done["call_start_ts"],
                &done["call_end_ts"],
                &done["call_duration_s"]
            ),
            (
                &1_750_100_002u64.into(),
                &1_750_100_120u64.into(),
                &118u64.into()
            )
        );
        assert_eq!(
            done["message_key"], connect["message_key"],
            "one call, one key"
        );
        assert_ne!(
            connect["id"], done["id"],
            "connect and terminate are two events"
        );
        let pepper = Pepper::new(b"test-pepper-0123456789");
        // The customer is the caller of a call they made, the callee of one the business made.
        assert_eq!(
            done["person_hash"],
            pepper.hash_phone("919812345670").to_hex().as_str()
        );
        assert_eq!(done["country_code"], "91");
        assert_eq!(
            failed["person_hash"],
            pepper.hash_phone("447700900456").to_hex().as_str()
        );
        assert_eq!(failed["country_code"], "44");
        assert_eq!(failed["error_code"], 138_006);
        assert_eq!(column(&events[3..], "status"), ["RINGING", "REJECTED"]);
        assert_eq!(events[3]["phone_number_id"], "106540352242922");
    }

    #[test]
    fn opt_outs_name_the_category_and_the_choice() {
        let events = events_json(fixture("user_preferences"));
        assert_eq!(column(&events, "kind"), ["opt_out", "opt_out", "message"]);
        assert_eq!(column(&events, "preference"), ["stop", "resume", ""]);
        assert_eq!(events[0]["preference_category"], "marketing_messages");
        assert_eq!(events[0]["ts"], 1_750_200_000);
        assert_eq!(events[1]["country_code"], "55");
        assert_eq!(events[2]["message_type"], "system");
        assert_eq!(events[2]["message_subtype"], "user_preference_changed");
        assert_ne!(events[0]["id"], events[1]["id"]);
    }

    #[test]
    fn template_lifecycle_keeps_pauses_rejections_and_categories() {
        let events = events_json(fixture("template_lifecycle"));
        assert_eq!(
            column(&events, "kind"),
            [
                "template_status",
                "template_status",
                "template_category",
                "template_components",
                "template_quality"
            ]
        );
        assert_eq!(events[0]["pause_title"], "FIRST_PAUSE");
        assert_eq!(events[0]["template_category"], "MARKETING");
        assert_eq!(events[0]["template_id"], "594425479261596");
        assert_eq!(events[1]["reason"], "INVALID_FORMAT");
        assert_eq!(
            (
                &events[2]["previous_category"],
                &events[2]["new_category"],
                &events[2]["correct_category"]
            ),
            (&"UTILITY".into(), &"MARKETING".into(), &"MARKETING".into())
        );
        assert_eq!(events[3]["template_name"], "order_update");
        assert_eq!(events[4]["new_quality"], "YELLOW");
    }

    #[test]
    fn account_health_keeps_alerts_decisions_violations_and_limits() {
        let events = events_json(fixture("account_health"));
        assert_eq!(
            column(&events, "kind"),
            [
                "account_alert",
                "account_review",
                "business_capability",
                "phone_name",
                "account_update",
                "phone_quality"
            ]
        );
        let e = &events;
        assert_eq!(
            (
                &e[0]["alert_type"],
                &e[0]["alert_severity"],
                &e[0]["alert_status"]
            ),
            (&"OBA_APPROVED".into(), &"CRITICAL".into(), &"ACTIVE".into())
        );
        assert_eq!(e[1]["decision"], "APPROVED");
        assert_eq!(e[2]["max_daily_conversations"], "100000");
        assert_eq!(e[3]["decision"], "REJECTED");
        assert_eq!(e[3]["display_phone_number"], "15550783881");
        assert_eq!(e[4]["violation_type"], "SCAM");
        assert_eq!(e[4]["ban_state"], "SCHEDULE_FOR_DISABLE");
        assert_eq!(e[5]["max_daily_conversations"], "100K");
        assert_eq!(e[5]["current_limit"], "TIER_10K");
    }

    #[test]
    fn inbound_detail_without_content() {
        let events = events_json(fixture("inbound_detail"));
        let kinds = column(&events, "kind");
        assert_eq!(&kinds[..6], ["message"; 6]);
        assert_eq!(&kinds[6..], ["other", "other", "other"]);
        assert_eq!(
            column(&events[..6], "message_type"),
            [
                "interactive",
                "interactive",
                "reaction",
                "text",
                "location",
                "text"
            ],
            "a message without `type` has the type of what it carries"
        );
        assert_eq!(
            column(&events[..2], "message_subtype"),
            ["nfm_reply", "button_reply"]
        );
        let original =
            "wamid.HBgMOTE5ODEyMzQ1NjcwFQIAEhggMTRFMEZGREM4MjE1QzgxREEwQ0RFNDBGNTgxMjM3RUUA";
        assert_eq!(events[2]["target_message_key"], key_of(original));
        let ad = &events[3];
        assert_eq!(
            (&ad["ad_source_type"], &ad["ad_source_id"]),
            (&"ad".into(), &"120208771234567890".into())
        );
        assert_eq!(
            ad["ad_click_key"],
            key_of("ARAkLkA8rmlFeiCktEJQ-SECRET-CLICK")
        );
        assert_eq!(ad["from_ad"], true);
        assert_eq!(events[5]["group_key"], key_of("120363040000000001@g.us"));
        assert_eq!(events[0]["country_code"], "91");
        // Coexistence traffic: counted per business number, never read.
        assert_eq!(
            column(&events[6..], "field"),
            ["smb_message_echoes", "history", "smb_app_state_sync"]
        );
        let counts: Vec<u64> = events[6..]
            .iter()
            .map(|e| e["item_count"].as_u64().unwrap_or(0))
            .collect();
        assert_eq!(counts, [2, 1, 1]);
        assert_eq!(events[6]["phone_number_id"], "106540352242922");
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
