#!/bin/sh
# Creates bluetick's roles and users on a ClickHouse with SQL access control (the official
# image runs this from /docker-entrypoint-initdb.d on first start). Passwords come from the
# environment: BLUETICK_CH_ADMIN_PASSWORD, BLUETICK_CH_WRITER_PASSWORD, BLUETICK_CH_READER_PASSWORD.
set -eu
client() { clickhouse client --user "${CLICKHOUSE_USER:-default}" --password "${CLICKHOUSE_PASSWORD:-}" "$@"; }
client --multiquery < "${ROLES_SQL:-$(dirname "$0")/roles.sql}"
for role in admin writer reader; do
  var=$(echo "BLUETICK_CH_${role}_PASSWORD" | tr '[:lower:]' '[:upper:]')
  eval "password=\${$var:?set $var}"
  case "$password" in *"'"*|*"\\"*) echo "$var must not hold quotes or backslashes" >&2; exit 1 ;; esac
  client --query "CREATE USER IF NOT EXISTS bluetick_$role IDENTIFIED WITH sha256_password BY '$password'"
  client --query "GRANT bluetick_$role TO bluetick_$role"
  client --query "ALTER USER bluetick_$role DEFAULT ROLE bluetick_$role"
done
