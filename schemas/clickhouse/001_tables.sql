-- Tables of bluetick, one row per Kafka event. Every table is partitioned by day of its event
-- time, so retention is `ALTER TABLE ... DROP PARTITION` (no TTL clause: ClickHouse 18.16 has
-- none). ReplacingMergeTree keyed on the event id collapses Meta's retries and Kafka
-- redeliveries on merge; the views count distinct messages, so they are exact before merges too.
-- Works on ClickHouse 18.16 and current releases: DateTime('UTC') seconds, UInt8 booleans.

CREATE TABLE IF NOT EXISTS message_status (
    event_id String,
    ts DateTime('UTC'),
    received_ms UInt64,
    waba_id String,
    phone_number_id String,
    display_phone_number String,
    message_id String,
    status String,
    person_masked String,
    person_hash String,
    conversation_id String,
    conversation_origin String,
    conversation_expiration_ts UInt32,
    pricing_model String,
    pricing_category String,
    pricing_type String,
    billable UInt8,
    error_code Int32,
    error_title String
) ENGINE = ReplacingMergeTree(received_ms)
PARTITION BY toYYYYMMDD(ts)
ORDER BY (phone_number_id, message_id, status, event_id)
SETTINGS index_granularity = 8192;

CREATE TABLE IF NOT EXISTS inbound_message (
    event_id String,
    ts DateTime('UTC'),
    received_ms UInt64,
    waba_id String,
    phone_number_id String,
    message_id String,
    message_type String,
    person_masked String,
    person_hash String,
    context_message_id String,
    forwarded UInt8,
    from_ad UInt8,
    error_code Int32,
    error_title String
) ENGINE = ReplacingMergeTree(received_ms)
PARTITION BY toYYYYMMDD(ts)
ORDER BY (phone_number_id, message_id, event_id)
SETTINGS index_granularity = 8192;

CREATE TABLE IF NOT EXISTS account_event (
    event_id String,
    ts DateTime('UTC'),
    received_ms UInt64,
    kind String,
    field String,
    waba_id String,
    phone_number_id String,
    display_phone_number String,
    template_id String,
    template_name String,
    template_language String,
    update_event String,
    reason String,
    previous_quality String,
    new_quality String,
    current_limit String,
    error_code Int32,
    error_title String
) ENGINE = ReplacingMergeTree(received_ms)
PARTITION BY toYYYYMMDD(ts)
ORDER BY (waba_id, kind, event_id)
SETTINGS index_granularity = 8192;

CREATE TABLE IF NOT EXISTS security_event (
    ts DateTime('UTC'),
    received_ms UInt64,
    source_ip String,
    reason String,
    route String
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (ts, source_ip)
SETTINGS index_granularity = 8192;
