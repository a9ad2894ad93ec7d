-- bluetick's roles for ClickHouse with SQL access control (current releases, ClickHouse Cloud).
-- deploy/clickhouse/init-users.sh runs this, then creates one user per role with a password
-- from the environment. The same least privilege as users.xml:
--   bluetick_admin   migrate, retention, erase: the schema, ALTER (mutations, partition drops)
--   bluetick_writer  the sink: INSERT into the tables it fills and the daily aggregates it
--                    recounts, SELECT of what it recounts them from, of the erasure audit and
--                    of schema_migrations (its init container waits for the schema)
--   bluetick_reader  dashboards, export, audit: SELECT only
CREATE ROLE IF NOT EXISTS bluetick_admin;
CREATE ROLE IF NOT EXISTS bluetick_writer;
CREATE ROLE IF NOT EXISTS bluetick_reader;
GRANT CREATE DATABASE ON bluetick.* TO bluetick_admin;
GRANT CREATE TABLE, CREATE VIEW, DROP TABLE, DROP VIEW, ALTER, INSERT, SELECT, OPTIMIZE ON bluetick.* TO bluetick_admin;
GRANT SELECT ON system.parts TO bluetick_admin;
GRANT SELECT ON system.mutations TO bluetick_admin;
GRANT SELECT ON system.tables TO bluetick_admin;
GRANT SELECT ON system.columns TO bluetick_admin;
GRANT INSERT ON bluetick.message_status TO bluetick_writer;
GRANT INSERT ON bluetick.inbound_message TO bluetick_writer;
GRANT INSERT ON bluetick.account_event TO bluetick_writer;
GRANT INSERT ON bluetick.security_event TO bluetick_writer;
GRANT INSERT ON bluetick.call_event TO bluetick_writer;
GRANT INSERT ON bluetick.opt_out TO bluetick_writer;
GRANT SELECT ON bluetick.erasure_audit TO bluetick_writer;
GRANT SELECT ON bluetick.schema_migrations TO bluetick_writer;
GRANT INSERT, SELECT ON bluetick.status_daily TO bluetick_writer;
GRANT INSERT, SELECT ON bluetick.failure_daily TO bluetick_writer;
GRANT INSERT, SELECT ON bluetick.inbound_daily TO bluetick_writer;
GRANT INSERT, SELECT ON bluetick.call_daily TO bluetick_writer;
GRANT INSERT, SELECT ON bluetick.opt_out_daily TO bluetick_writer;
GRANT SELECT ON bluetick.message_status TO bluetick_writer;
GRANT SELECT ON bluetick.inbound_message TO bluetick_writer;
GRANT SELECT ON bluetick.call_event TO bluetick_writer;
GRANT SELECT ON bluetick.opt_out TO bluetick_writer;
GRANT SELECT ON bluetick.* TO bluetick_reader;
GRANT SELECT ON system.parts TO bluetick_reader;
GRANT SELECT ON system.tables TO bluetick_reader;
GRANT SELECT ON system.columns TO bluetick_reader
