#!/usr/bin/env bash
# Pictures of the two Grafana dashboards from real data, for the docs (Grafana does not reach
# these machines). Needs the pipeline of scripts/up.sh running. Starts a real Prometheus
# (Debian's package) scraping ingest and sink every 2 s, drives RENDER_SECONDS of mixed traffic
# (and a few forged requests) with the load generator, then runs every panel's own PromQL and
# ClickHouse SQL and plots them into docs/img/. Stops the Prometheus it started.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=.run/render
CACHE=${BLUETICK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bluetick}
mkdir -p "$RUN"
# The demo's secrets (scripts/up.sh generated them).
while IFS='=' read -r name value; do
  [ -n "${!name:-}" ] || export "$name=$value"
done <.run/secrets.env
CH=${BLUETICK_CLICKHOUSE_URL:-http://127.0.0.1:8123}
DB=${BLUETICK_CLICKHOUSE_DATABASE:-bluetick}
curl -fs http://127.0.0.1:8080/healthz >/dev/null || { echo "start the pipeline first: scripts/up.sh"; exit 1; }

command -v prometheus >/dev/null || { echo "== installing prometheus (Debian)"; ${SUDO:-$( [ "$(id -u)" = 0 ] || echo sudo)} apt-get install -y --no-install-recommends prometheus >/dev/null; }
[ -x "$CACHE/plot-venv/bin/python" ] || { python3 -m venv "$CACHE/plot-venv"; "$CACHE/plot-venv/bin/pip" install -q matplotlib; }
promtool check rules deploy/prometheus/alerts.yml

cat >"$RUN/prometheus.yml" <<YAML
global: {scrape_interval: 2s}
scrape_configs:
  - job_name: bluetick-ingest
    static_configs: [{targets: ["127.0.0.1:8080"]}]
  - job_name: bluetick-sink
    static_configs: [{targets: ["127.0.0.1:9091"]}]
YAML
prometheus --config.file="$RUN/prometheus.yml" --storage.tsdb.path="$RUN/tsdb" \
  --web.listen-address=127.0.0.1:19090 >"$RUN/prometheus.log" 2>&1 &
prom=$!
trap 'kill $prom 2>/dev/null; wait $prom 2>/dev/null || true' EXIT
sleep 3
SECONDS_TO_RUN=${RENDER_SECONDS:-60}
echo "== $SECONDS_TO_RUN s of mixed traffic while Prometheus scrapes"
for i in $(seq 1 20); do
  curl -s -o /dev/null -X POST http://127.0.0.1:8080/webhook -H 'content-type: application/json' \
    -H 'x-hub-signature-256: sha256=00' --data-binary '{}'
done
cargo build --quiet -p bluetick-loadtest --bins
target/debug/bluetick-load run --url http://127.0.0.1:8080/webhook --rate 150 --duration "$SECONDS_TO_RUN" 2>/dev/null
sleep 8
"$CACHE/plot-venv/bin/python" scripts/render-dashboards.py http://127.0.0.1:19090 "$CH" "$DB" docs/img
