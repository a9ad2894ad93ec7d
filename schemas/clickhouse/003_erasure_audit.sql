-- One row per person per `bluetick erase` run: proof that an erasure request was carried out.
-- It names the person only by the keyed hash (never the number) and is not subject to the
-- tables' retention: it is the record a data-protection authority may ask to see.
CREATE TABLE IF NOT EXISTS erasure_audit (
    request_id String,
    person_hash String,
    tables String,
    rows_removed UInt64,
    rows_remaining UInt64,
    requested_at DateTime('UTC'),
    finished_at DateTime('UTC'),
    outcome String
) ENGINE = MergeTree
ORDER BY (requested_at, request_id)
SETTINGS index_granularity = 8192;
