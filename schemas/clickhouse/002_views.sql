-- Dashboard views. Both group by message id first, so duplicates (Meta retries, Kafka
-- redeliveries) and out-of-order arrival do not change the result.
-- Status rank: sent 1 < delivered 2 < read 3; failed 4 is terminal; unknown statuses rank 0
-- (kept, never win over a known one).

CREATE VIEW IF NOT EXISTS message_latest_status AS
SELECT
    message_id,
    any(phone_number_id) AS phone_number_id,
    any(pricing_category) AS pricing_category,
    argMax(status, rank * 10000000000 + toUInt64(ts)) AS status,
    max(ts) AS last_ts
FROM (
    SELECT message_id, phone_number_id, pricing_category, status, ts,
        multiIf(status = 'failed', 4, status = 'read', 3, status = 'delivered', 2, status = 'sent', 1, 0) AS rank
    FROM message_status
)
GROUP BY message_id;

CREATE VIEW IF NOT EXISTS daily_funnel AS
SELECT
    day,
    phone_number_id,
    pricing_category,
    count() AS messages,
    countIf(max_rank >= 1) AS sent,
    countIf(max_rank >= 2) AS delivered,
    countIf(max_rank >= 3) AS read,
    countIf(failed = 1) AS failed,
    countIf(billable = 1) AS billable
FROM (
    SELECT
        message_id,
        toDate(min(ts)) AS day,
        any(phone_number_id) AS phone_number_id,
        any(pricing_category) AS pricing_category,
        max(multiIf(status = 'read', 3, status = 'delivered', 2, status = 'sent', 1, 0)) AS max_rank,
        max(status = 'failed') AS failed,
        max(billable) AS billable
    FROM message_status
    GROUP BY message_id
)
GROUP BY day, phone_number_id, pricing_category;
