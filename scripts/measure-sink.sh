#!/usr/bin/env bash
# Measures the sink on this machine against the real broker and ClickHouse, with release
# builds, and prints:
#   1. throughput: EVENTS status events are produced through ingest first (1000 per webhook),
#      then a fresh sink drains them; rows/s and rows per CPU-second of the sink (and the CPU
#      seconds ClickHouse and the broker spent meanwhile);
#   2. webhook -> queryable latency: with the sink caught up, PROBES single-status webhooks at
#      RATE/s; each is timed from its POST until its row answers a ClickHouse query.
# Loopback only, bounded in count and time; stops the bluetick processes it started (the broker
# and ClickHouse stay up: scripts/services.sh stop). Uses its own topics and
# database (dropped at the end).
#
#   scripts/measure-sink.sh            # EVENTS=200000 PROBES=100 RATE=10
#   PERF=1 scripts/measure-sink.sh     # also profiles the drain: perf report -i .run/measure/sink.perf
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-200000}
PROBES=${PROBES:-100}
RATE=${RATE:-10}
RUN=.run/measure
mkdir -p "$RUN"
scripts/services.sh start
cargo build --release --quiet --bin bluetick

id="m$(date +%s)"
export BLUETICK_APP_SECRET=measure-secret BLUETICK_VERIFY_TOKEN=t BLUETICK_PEPPER=measure-pepper-0123456789
export BLUETICK_KAFKA_EVENTS_TOPIC="$id.events" BLUETICK_KAFKA_SECURITY_TOPIC="$id.security"
export BLUETICK_KAFKA_DEAD_LETTER_TOPIC="$id.dlq" BLUETICK_CLICKHOUSE_DATABASE="bench_$id"
export BLUETICK_SINK_GROUP_ID="$id" BLUETICK_LISTEN=127.0.0.1:18080 BLUETICK_SINK_LISTEN=127.0.0.1:19091
export BLUETICK_LOG=warn
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  curl -s http://127.0.0.1:8123/ --data-binary "DROP DATABASE IF EXISTS bench_$id" >/dev/null || true
}
trap cleanup EXIT

target/release/bluetick migrate >/dev/null
target/release/bluetick ingest >"$RUN/ingest.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -fs http://127.0.0.1:18080/healthz >/dev/null && break; sleep 0.1; done

cpu() { # pid -> CPU seconds so far
  awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$1/stat"
}

echo "== producing $EVENTS status events through ingest"
python3 - "$EVENTS" <<'PY'
import hashlib, hmac, json, sys, time, urllib.request
events = int(sys.argv[1]); now = int(time.time()); sent = 0; n = 0
while sent < events:
    k = min(1000, events - sent)
    statuses = [{"id": f"wamid.bulk.{n}.{i}", "status": ["sent", "delivered", "read"][i % 3],
                 "timestamp": str(now - 600 + i % 300), "recipient_id": f"9198{10000000 + i:08d}",
                 "conversation": {"id": f"c{i}", "origin": {"type": "utility"}},
                 "pricing": {"billable": True, "pricing_model": "PMP", "category": "utility", "type": "regular"}}
                for i in range(k)]
    body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
        "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "statuses": statuses}}]}]}).encode()
    sig = "sha256=" + hmac.new(b"measure-secret", body, hashlib.sha256).hexdigest()
    req = urllib.request.Request("http://127.0.0.1:18080/webhook", body,
        {"content-type": "application/json", "x-hub-signature-256": sig})
    while True:
        try:
            urllib.request.urlopen(req, timeout=30).read(); break
        except urllib.error.HTTPError as e:
            if e.code != 503: raise
            time.sleep(0.2)
    sent += k; n += 1
print(f"   {sent} events in {n} webhooks, all answered 200")
PY

ch_pid=$(cat .run/clickhouse.pid 2>/dev/null || pgrep -o clickhouse-serv || echo "")
tansu_pid=$(cat .run/tansu.pid 2>/dev/null || pgrep -o tansu || echo "")
rows() { curl -s http://127.0.0.1:19091/metrics | awk '/^bluetick_sink_rows_total/ {s += $2} END {print s + 0}'; }

echo "== draining them with a fresh sink"
target/release/bluetick sink >"$RUN/sink.log" 2>&1 &
sink=$!
pids+=("$sink")
if [ "${PERF:-0}" = 1 ]; then
  perf record -q -F 999 -g -p "$sink" -o "$RUN/sink.perf" 2>"$RUN/perf.log" &
  perf_pid=$!
fi
ch0=$([ -n "$ch_pid" ] && cpu "$ch_pid" || echo 0)
tansu0=$([ -n "$tansu_pid" ] && cpu "$tansu_pid" || echo 0)
deadline=$((SECONDS + 300))
first=""
while :; do
  r=$(rows)
  if [ -z "$first" ] && [ "$r" -gt 0 ]; then first=$(date +%s.%N); cpu_first=$(cpu "$sink"); r_first=$r; fi
  [ "$r" -ge "$EVENTS" ] && break
  [ $SECONDS -ge $deadline ] && { echo "   timed out at $r rows"; exit 1; }
  sleep 0.05
done
last=$(date +%s.%N)
cpu_last=$(cpu "$sink")
if [ -n "${perf_pid:-}" ]; then kill -TERM "$perf_pid" 2>/dev/null || true; wait "$perf_pid" 2>/dev/null || true; fi
ch1=$([ -n "$ch_pid" ] && cpu "$ch_pid" || echo 0)
tansu1=$([ -n "$tansu_pid" ] && cpu "$tansu_pid" || echo 0)
awk -v n="$EVENTS" -v rf="$r_first" -v a="$first" -v b="$last" -v c0="$cpu_first" -v c1="$cpu_last" \
    -v h0="$ch0" -v h1="$ch1" -v t0="$tansu0" -v t1="$tansu1" -v total="$cpu_last" 'BEGIN {
  rows = n - rf; secs = b - a; cpu = c1 - c0;
  printf "   %d rows after the first batch in %.2f s: %.0f rows/s\n", rows, secs, rows / secs;
  printf "   sink CPU %.2f s for them: %.0f rows per sink CPU-second (whole run incl. start: %.2f s)\n", cpu, rows / (cpu > 0 ? cpu : 0.001), total;
  printf "   meanwhile ClickHouse used %.2f CPU s, the broker %.2f CPU s\n", h1 - h0, t1 - t0;
}'
echo "   sink batches: $(curl -s http://127.0.0.1:19091/metrics | awk '/^bluetick_sink_batch_rows_count/ {print $2}'), \
mean $(curl -s http://127.0.0.1:19091/metrics | awk '/^bluetick_sink_batch_rows_sum/ {s=$2} /^bluetick_sink_batch_rows_count/ {c=$2} END {printf "%.0f", s / c}') records each"

echo "== webhook -> queryable latency: $PROBES single-status webhooks at $RATE/s"
python3 - "$PROBES" "$RATE" "bench_$id" <<'PY'
import hashlib, hmac, json, sys, threading, time, urllib.request
probes, rate, db = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
posted, seen = {}, {}
def post(i):
    now = int(time.time())
    body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
        "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "statuses": [{"id": f"wamid.probe.{i}", "status": "delivered", "timestamp": str(now),
                      "recipient_id": "919876544321"}]}}]}]}).encode()
    sig = "sha256=" + hmac.new(b"measure-secret", body, hashlib.sha256).hexdigest()
    req = urllib.request.Request("http://127.0.0.1:18080/webhook", body,
        {"content-type": "application/json", "x-hub-signature-256": sig})
    posted[i] = time.time()
    urllib.request.urlopen(req, timeout=30).read()
def watch():
    q = f"SELECT message_id FROM message_status WHERE message_id LIKE 'wamid.probe.%' FORMAT TSV"
    deadline = time.time() + probes / rate + 30
    while len(seen) < probes and time.time() < deadline:
        ids = urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:8123/?database={db}", q.encode())).read().decode().split()
        t = time.time()
        for m in ids:
            seen.setdefault(int(m.rsplit(".", 1)[1]), t)
        time.sleep(0.01)
w = threading.Thread(target=watch); w.start()
start = time.time()
for i in range(probes):
    time.sleep(max(0, start + i / rate - time.time()))
    threading.Thread(target=post, args=(i,)).start()
w.join()
lat = sorted(seen[i] - posted[i] for i in seen)
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"   {len(lat)}/{probes} visible; webhook -> queryable p50 {q(0.5)*1000:.0f} ms, "
      f"p99 {q(0.99)*1000:.0f} ms, max {lat[-1]*1000:.0f} ms (sink.batch_max_age_ms = 1000)")
PY
