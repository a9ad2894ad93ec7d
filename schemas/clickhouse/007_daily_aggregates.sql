-- Daily aggregates the analytics dashboards read, so a panel over 30 days reads a few
-- thousand rows instead of every status. Filled by the sink (`src/rollup.rs`): for each day it
-- wrote rows to, it recomputes that day's counts from the raw table with exact distinct counts
-- (uniqExact over message ids, so Meta's retries and Kafka redeliveries count once) and
-- inserts them under a new `version`; a group that no longer has rows (after an erasure) gets
-- a row of zeros. ReplacingMergeTree keeps the latest version of each group; readers take
-- `FINAL` (the tables are small). Counts are per day of the event (UTC): a message sent on one
-- day and read the next counts as sent on the first and read on the second.
--
-- No aggregate holds a person's identifier, a message id or a hash of either: only counts.
-- Partitioned by day like the rows they summarise, and dropped by `bluetick retention` with
-- them.

CREATE TABLE IF NOT EXISTS status_daily (
    day Date,
    tenant String,
    waba_id String,
    phone_number_id String,
    pricing_category String,
    country_code String,
    sent UInt64,
    delivered UInt64,
    read UInt64,
    failed UInt64,
    billable UInt64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(day)
ORDER BY (day, tenant, waba_id, phone_number_id, pricing_category, country_code)
SETTINGS index_granularity = 8192;

CREATE TABLE IF NOT EXISTS failure_daily (
    day Date,
    tenant String,
    waba_id String,
    phone_number_id String,
    error_code Int32,
    error_title String,
    messages UInt64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(day)
ORDER BY (day, tenant, waba_id, phone_number_id, error_code)
SETTINGS index_granularity = 8192;

CREATE TABLE IF NOT EXISTS inbound_daily (
    day Date,
    tenant String,
    waba_id String,
    phone_number_id String,
    country_code String,
    message_type String,
    ad_source_id String,
    messages UInt64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(day)
ORDER BY (day, tenant, waba_id, phone_number_id, country_code, message_type, ad_source_id)
SETTINGS index_granularity = 8192;

CREATE TABLE IF NOT EXISTS call_daily (
    day Date,
    tenant String,
    waba_id String,
    phone_number_id String,
    country_code String,
    direction String,
    status String,
    calls UInt64,
    duration_s UInt64,
    longest_s UInt64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(day)
ORDER BY (day, tenant, waba_id, phone_number_id, country_code, direction, status)
SETTINGS index_granularity = 8192;

CREATE TABLE IF NOT EXISTS opt_out_daily (
    day Date,
    tenant String,
    waba_id String,
    phone_number_id String,
    country_code String,
    category String,
    preference String,
    events UInt64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(day)
ORDER BY (day, tenant, waba_id, phone_number_id, country_code, category, preference)
SETTINGS index_granularity = 8192;

-- The rate card: the price of one billable message per market (country calling code) and
-- pricing category, from a date on (`bluetick rate-card load FILE.csv`). `rate_card_daily` is
-- the same card with one row per day it applies to (ClickHouse 18.16 has no ASOF JOIN), which
-- the load writes; prices are in millionths of the currency unit, so sums stay exact.
CREATE TABLE IF NOT EXISTS rate_card (
    country_code String,
    pricing_category String,
    effective_from Date,
    currency String,
    price_micros UInt64,
    loaded_at DateTime('UTC')
) ENGINE = ReplacingMergeTree(loaded_at)
ORDER BY (country_code, pricing_category, effective_from)
SETTINGS index_granularity = 8192;

CREATE TABLE IF NOT EXISTS rate_card_daily (
    day Date,
    country_code String,
    pricing_category String,
    currency String,
    price_micros UInt64,
    loaded_at DateTime('UTC')
) ENGINE = ReplacingMergeTree(loaded_at)
PARTITION BY toYYYYMM(day)
ORDER BY (day, country_code, pricing_category)
SETTINGS index_granularity = 8192;

-- Estimated spend per day, tenant, pricing category and market: billable messages times the
-- rate that applied that day (no rate: spend 0 and currency empty, so gaps in the card show).
CREATE VIEW IF NOT EXISTS spend_daily AS
SELECT
    day,
    tenant,
    pricing_category,
    country_code,
    messages,
    currency,
    messages * price_micros AS spend_micros
FROM (
    SELECT day, tenant, pricing_category, country_code, sum(billable) AS messages
    FROM status_daily FINAL
    GROUP BY day, tenant, pricing_category, country_code
) AS billed
ANY LEFT JOIN (
    SELECT day, country_code, pricing_category, currency, price_micros
    FROM rate_card_daily FINAL
) AS rates USING (day, country_code, pricing_category);
