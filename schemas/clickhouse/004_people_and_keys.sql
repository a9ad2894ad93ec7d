-- Schema 004: people as Meta now names them, and ids that no longer carry phone numbers.
-- - message_id / context_message_id hold bluetick's keyed pseudonym of Meta's id from now on
--   (32 hex digits; `bluetick message-key`). The columns keep their names: ClickHouse 18.16
--   cannot rename a column, and message_id is part of the sorting key. Rows written before
--   this schema are re-keyed by `bluetick migrate` right after it applies this file.
-- - A person may be identified by a business-scoped user id (and a parent one) as well as, or
--   instead of, a phone number; each is kept only as a keyed hash. recipient_type tells a
--   group (not a person) from an individual.
-- - erasure_audit records which kind of identifier each row names; erase writes a row before
--   it deletes, and the sink drops events of an erased identifier older than its erasure.
-- New columns are appended (RowBinary inserts are positional).

ALTER TABLE message_status ADD COLUMN recipient_type String;
ALTER TABLE message_status ADD COLUMN user_hash String;
ALTER TABLE message_status ADD COLUMN parent_user_hash String;
ALTER TABLE inbound_message ADD COLUMN user_hash String;
ALTER TABLE inbound_message ADD COLUMN parent_user_hash String;
ALTER TABLE erasure_audit ADD COLUMN identifier String DEFAULT 'phone'
