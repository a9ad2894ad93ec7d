#!/usr/bin/env bash
# Brings the pipeline up on this machine and pushes demo traffic through it: starts the broker
# and ClickHouse, builds bluetick, starts `bluetick ingest` on 127.0.0.1:8080, sends signed
# webhooks (every fixture shape plus a burst of statuses), and prints what landed.
# Stop everything with scripts/down.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=.run
mkdir -p "$RUN"

export BLUETICK_LISTEN=${BLUETICK_LISTEN:-127.0.0.1:8080}
export BLUETICK_APP_SECRET=${BLUETICK_APP_SECRET:-demo-app-secret}
export BLUETICK_VERIFY_TOKEN=${BLUETICK_VERIFY_TOKEN:-demo-verify-token}
export BLUETICK_PEPPER=${BLUETICK_PEPPER:-demo-pepper-change-me-in-production}
export BLUETICK_KAFKA_BROKERS=${BLUETICK_KAFKA_BROKERS:-127.0.0.1:9092}
URL="http://$BLUETICK_LISTEN"

scripts/services.sh start
echo "== building bluetick"
cargo build --quiet --bin bluetick

if [ -f "$RUN/ingest.pid" ] && kill -0 "$(cat "$RUN/ingest.pid")" 2>/dev/null; then
  echo "== ingest already running (pid $(cat "$RUN/ingest.pid"))"
else
  target/debug/bluetick ingest >"$RUN/ingest.log" 2>&1 &
  echo $! >"$RUN/ingest.pid"
  for _ in $(seq 1 100); do curl -fs "$URL/healthz" >/dev/null && break; sleep 0.1; done
  echo "== ingest up on $URL (pid $(cat "$RUN/ingest.pid")), log in $RUN/ingest.log"
fi

post() { # file
  local sig
  sig="sha256=$(openssl dgst -sha256 -hmac "$BLUETICK_APP_SECRET" -r <"$1" | cut -d' ' -f1)"
  curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/webhook" \
    -H 'content-type: application/json' -H "x-hub-signature-256: $sig" --data-binary "@$1"
}

echo "== handshake: $(curl -s "$URL/webhook?hub.mode=subscribe&hub.verify_token=$BLUETICK_VERIFY_TOKEN&hub.challenge=42")"
echo "== sending demo webhooks"
for f in tests/fixtures/*.json; do
  printf '   %-28s -> %s\n' "$(basename "$f")" "$(post "$f")"
done
burst="$RUN/demo-burst.json"
python3 - "$burst" <<'PY'
import json, sys
statuses = [{"id": f"wamid.demo.{i:06d}", "status": ["sent", "delivered", "read"][i % 3],
             "timestamp": str(1750000000 + i), "recipient_id": f"9198{10000000 + i:08d}",
             "pricing": {"billable": True, "pricing_model": "PMP", "category": "utility", "type": "regular"}}
            for i in range(1000)]
body = {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [
    {"field": "messages", "value": {"messaging_product": "whatsapp",
     "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
     "statuses": statuses}}]}]}
json.dump(body, open(sys.argv[1], "w"))
PY
printf '   %-28s -> %s\n' "1000-status burst" "$(post "$burst")"
printf '   %-28s -> %s\n' "forged signature" "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/webhook" \
  -H 'content-type: application/json' -H 'x-hub-signature-256: sha256=00' --data-binary "@$burst")"

echo "== events acked by the broker, by kind (from $URL/metrics)"
curl -s "$URL/metrics" | grep -E '^bluetick_ingest_(events|requests|signature_failures)_total' | sed 's/^/   /'
echo
echo "Events are in topic bluetick.events.v1 on $BLUETICK_KAFKA_BROKERS."
echo "Stop everything with: scripts/down.sh"
