-- What else Meta sends that a BSP charts: calls, marketing opt-outs, template lifecycle,
-- account and number health, inbound detail without content, ad attribution, the client
-- business (tenant) of every row and the market (country calling code) of every person.
-- Ids that could carry a number (call ids, reaction targets, groups, ad click ids) hold keyed
-- pseudonyms, like message_id. Columns are added with defaults, so older rows read as empty.

ALTER TABLE message_status ADD COLUMN tenant String;
ALTER TABLE message_status ADD COLUMN country_code String;
ALTER TABLE inbound_message ADD COLUMN tenant String;
ALTER TABLE inbound_message ADD COLUMN country_code String;
ALTER TABLE inbound_message ADD COLUMN message_subtype String;
ALTER TABLE inbound_message ADD COLUMN target_message_id String;
ALTER TABLE inbound_message ADD COLUMN group_id String;
ALTER TABLE inbound_message ADD COLUMN ad_source_type String;
ALTER TABLE inbound_message ADD COLUMN ad_source_id String;
ALTER TABLE inbound_message ADD COLUMN ad_click_id String;
ALTER TABLE account_event ADD COLUMN tenant String;
ALTER TABLE account_event ADD COLUMN template_category String;
ALTER TABLE account_event ADD COLUMN pause_title String;
ALTER TABLE account_event ADD COLUMN previous_category String;
ALTER TABLE account_event ADD COLUMN new_category String;
ALTER TABLE account_event ADD COLUMN correct_category String;
ALTER TABLE account_event ADD COLUMN alert_type String;
ALTER TABLE account_event ADD COLUMN alert_severity String;
ALTER TABLE account_event ADD COLUMN alert_status String;
ALTER TABLE account_event ADD COLUMN decision String;
ALTER TABLE account_event ADD COLUMN violation_type String;
ALTER TABLE account_event ADD COLUMN ban_state String;
ALTER TABLE account_event ADD COLUMN max_daily_conversations String;
ALTER TABLE account_event ADD COLUMN item_count UInt32;

-- Calls (Business Calling API): a call connecting or ending (kind call: update_event connect /
-- terminate, with status, times and duration once it ended) and call statuses (kind
-- call_status: RINGING, ACCEPTED, REJECTED).
CREATE TABLE IF NOT EXISTS call_event (
    event_id String,
    ts DateTime('UTC'),
    received_ms UInt64,
    kind String,
    waba_id String,
    phone_number_id String,
    tenant String,
    call_id String,
    update_event String,
    status String,
    direction String,
    start_ts UInt32,
    end_ts UInt32,
    duration_s UInt32,
    person_masked String,
    person_hash String,
    user_hash String,
    country_code String,
    error_code Int32,
    error_title String
) ENGINE = ReplacingMergeTree(received_ms)
PARTITION BY toYYYYMMDD(ts)
ORDER BY (phone_number_id, call_id, kind, event_id)
SETTINGS index_granularity = 8192;

-- Marketing opt-outs and opt-ins (user_preferences): who (hashed), which category, stop or
-- resume, when.
CREATE TABLE IF NOT EXISTS opt_out (
    event_id String,
    ts DateTime('UTC'),
    received_ms UInt64,
    waba_id String,
    phone_number_id String,
    tenant String,
    category String,
    preference String,
    person_masked String,
    person_hash String,
    user_hash String,
    country_code String
) ENGINE = ReplacingMergeTree(received_ms)
PARTITION BY toYYYYMMDD(ts)
ORDER BY (phone_number_id, ts, event_id)
SETTINGS index_granularity = 8192;
