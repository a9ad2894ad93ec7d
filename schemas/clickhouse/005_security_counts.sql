-- Schema 005: a security event counts the refusals of one source for one reason and route over
-- a window (ingest.security_event_window_ms) instead of being one row per refused request, so
-- a flood of forged requests cannot flood the security log. Rows written before mean one.
ALTER TABLE security_event ADD COLUMN count UInt32 DEFAULT 1
