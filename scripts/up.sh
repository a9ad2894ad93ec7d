#!/usr/bin/env bash
# Brings the whole pipeline up on this machine and pushes demo traffic through it: starts the
# broker and ClickHouse, builds bluetick, runs `bluetick migrate`, starts `bluetick ingest` on
# 127.0.0.1:8080 and `bluetick sink` (metrics on 127.0.0.1:9091), sends signed webhooks (every
# fixture shape, each twice as Meta retries, then DEMO_SECONDS of mixed traffic at DEMO_RATE
# requests/s from the load generator: statuses out of order, batches, inbound messages,
# template updates, 5 % exact duplicates), prints what landed in ClickHouse, and ends with
# `bluetick audit` of everything it stored and produced.
# Stop everything with scripts/down.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=.run
mkdir -p "$RUN"

# Secrets: random ones, generated once into the run folder (owner-only) and reused by later
# runs, so stored hashes stay comparable; bluetick refuses placeholders. Values already in the
# environment win.
SECRETS=$RUN/secrets.env
if [ ! -f "$SECRETS" ]; then
  (umask 077; {
    echo "BLUETICK_APP_SECRET=$(openssl rand -hex 32)"
    echo "BLUETICK_VERIFY_TOKEN=$(openssl rand -hex 16)"
    echo "BLUETICK_PEPPER=$(openssl rand -hex 32)"
    echo "BLUETICK_ID_KEY=$(openssl rand -hex 32)"
  } >"$SECRETS")
fi
while IFS='=' read -r name value; do
  [ -n "${!name:-}" ] || export "$name=$value"
done <"$SECRETS"
export BLUETICK_LISTEN=${BLUETICK_LISTEN:-127.0.0.1:8080}
export BLUETICK_KAFKA_BROKERS=${BLUETICK_KAFKA_BROKERS:-127.0.0.1:9092}
export BLUETICK_CLICKHOUSE_URL=${BLUETICK_CLICKHOUSE_URL:-http://127.0.0.1:8123}
export BLUETICK_CLICKHOUSE_DATABASE=${BLUETICK_CLICKHOUSE_DATABASE:-bluetick}
export BLUETICK_SINK_LISTEN=${BLUETICK_SINK_LISTEN:-127.0.0.1:9091}
# Static group membership: a restarted sink gets its partitions back at once.
export BLUETICK_SINK_INSTANCE_ID=${BLUETICK_SINK_INSTANCE_ID:-local-sink-0}
URL="http://$BLUETICK_LISTEN"
DB=$BLUETICK_CLICKHOUSE_DATABASE

scripts/services.sh start
echo "== building bluetick and its load generator"
cargo build --quiet -p bluetick -p bluetick-loadtest --bins

echo "== bluetick migrate"
target/debug/bluetick migrate | sed 's/^/   /'

start() { # name, health URL
  local name=$1 health=$2
  if [ -f "$RUN/$name.pid" ] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
    echo "== $name already running (pid $(cat "$RUN/$name.pid"))"
    return
  fi
  target/debug/bluetick "$name" >"$RUN/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
  for _ in $(seq 1 100); do curl -fs "$health" >/dev/null && break; sleep 0.1; done
  echo "== $name up (pid $(cat "$RUN/$name.pid")), log in $RUN/$name.log"
}
start ingest "$URL/healthz"
start sink "http://$BLUETICK_SINK_LISTEN/healthz"

query() { curl -sS "$BLUETICK_CLICKHOUSE_URL/?database=$DB" --data-binary "$1"; }

post() { # file
  local sig
  sig="sha256=$(openssl dgst -sha256 -hmac "$BLUETICK_APP_SECRET" -r <"$1" | cut -d' ' -f1)"
  curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/webhook" \
    -H 'content-type: application/json' -H "x-hub-signature-256: $sig" --data-binary "@$1"
}

echo "== handshake: $(curl -s "$URL/webhook?hub.mode=subscribe&hub.verify_token=$BLUETICK_VERIFY_TOKEN&hub.challenge=42")"
echo "== sending demo webhooks"
# The fixtures' times moved to the last minutes: the sink skips rows already past retention.
python3 - "$RUN" tests/fixtures/*.json <<'PY'
import json, os, re, sys, time
run, fixtures = sys.argv[1], sys.argv[2:]
for f in fixtures:
    text = open(f).read()
    times = [int(t) for t in re.findall(r'\b(1[5-9]\d{8})\b', text)]
    shift = int(time.time()) - 600 - max(times, default=0)
    text = re.sub(r'\b(1[5-9]\d{8})\b', lambda m: str(int(m.group(1)) + shift), text)
    open(os.path.join(run, "demo-" + os.path.basename(f)), "w").write(text)
PY
for f in "$RUN"/demo-*.json; do
  # Meta retries: each webhook arrives twice; the tables' views count it once.
  printf '   %-28s -> %s %s\n' "$(basename "$f" .json | sed 's/^demo-//')" "$(post "$f")" "$(post "$f")"
done
printf '   %-28s -> %s\n' "forged signature" "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/webhook" \
  -H 'content-type: application/json' -H 'x-hub-signature-256: sha256=00' --data-binary "@$f")"

DEMO_RATE=${DEMO_RATE:-200}
DEMO_SECONDS=${DEMO_SECONDS:-10}
echo "== load generator: mixed webhooks at $DEMO_RATE/s for $DEMO_SECONDS s (open loop), with end-to-end probes"
target/debug/bluetick-load run --url "$URL/webhook" --rate "$DEMO_RATE" --duration "$DEMO_SECONDS" \
  --probes 20 --clickhouse-url "$BLUETICK_CLICKHOUSE_URL" --database "$DB" --id-key "$BLUETICK_ID_KEY" 2>/dev/null | sed 's/^/   /'

echo "== events acked by the broker, by kind (from $URL/metrics)"
curl -s "$URL/metrics" | grep -E '^bluetick_ingest_events_total' | sed 's/^/   /'

echo "== waiting for the sink to store them"
acked=$(curl -s "$URL/metrics" | awk '/^bluetick_ingest_events_total/ {s += $2} END {print s + 0}')
sink_total() { curl -s "http://$BLUETICK_SINK_LISTEN/metrics" | awk -v m="^bluetick_sink_$1" '$0 ~ m {s += $2} END {print s + 0}'; }
for _ in $(seq 1 150); do
  done_now=$(( $(sink_total rows_total) + $(sink_total expired_rows_total) + $(sink_total dead_letters_total) ))
  [ "$done_now" -ge "$acked" ] && break
  sleep 0.2
done
echo "   ingest: $acked events acked by the broker"
echo "   sink:   $(sink_total rows_total) rows inserted (security events included), $(sink_total expired_rows_total) skipped as past retention, $(sink_total dead_letters_total) dead-lettered"

echo "== ClickHouse $BLUETICK_CLICKHOUSE_URL, database $DB"
echo "-- daily funnel (messages counted once, whatever the duplicates)"
query "SELECT day, pricing_category, sum(messages) AS messages, sum(sent) AS sent, sum(delivered) AS delivered,
       sum(read) AS read, sum(failed) AS failed, sum(billable) AS billable
       FROM daily_funnel GROUP BY day, pricing_category ORDER BY day, pricing_category FORMAT PrettyCompactMonoBlock"
echo "-- busiest business phone numbers"
query "SELECT phone_number_id, sum(messages) AS messages, round(sum(delivered) / sum(sent), 3) AS delivered_rate,
       round(sum(read) / greatest(sum(delivered), 1), 3) AS read_rate, sum(failed) AS failed
       FROM daily_funnel GROUP BY phone_number_id ORDER BY messages DESC LIMIT 5 FORMAT PrettyCompactMonoBlock"
echo "-- latest status per message (out-of-order arrival resolved)"
query "SELECT status, count() AS messages FROM message_latest_status GROUP BY status ORDER BY status FORMAT PrettyCompactMonoBlock"
echo "-- rows per table (raw, duplicates included until merges) and distinct events"
query "SELECT 'message_status' AS t, count() AS rows, uniqExact(event_id) AS events FROM message_status
       UNION ALL SELECT 'inbound_message', count(), uniqExact(event_id) FROM inbound_message
       UNION ALL SELECT 'account_event', count(), uniqExact(event_id) FROM account_event
       UNION ALL SELECT 'security_event', count(), count() FROM security_event FORMAT PrettyCompactMonoBlock"
echo "-- what a stored status looks like (masked number + keyed hash, no content)"
query "SELECT message_id, status, ts, person_masked, substring(person_hash, 1, 16) AS hash_prefix, pricing_category
       FROM message_status ORDER BY ts DESC LIMIT 3 FORMAT PrettyCompactMonoBlock"
echo "== bluetick audit: the privacy promise checked on the demo's data (every table, every topic)"
if target/debug/bluetick audit --max-records 20000 >"$RUN/audit.txt" 2>/dev/null; then
  sed 's/^/   /' "$RUN/audit.txt"
else
  sed 's/^/   /' "$RUN/audit.txt"
  echo "   THE AUDIT FOUND PLACES WHERE THE PROMISE DOES NOT HOLD (above)"
fi
echo
echo "Metrics: $URL/metrics (ingest), http://$BLUETICK_SINK_LISTEN/metrics (sink)."
echo "Stop everything with: scripts/down.sh"
