#!/usr/bin/env bash
# Reproduces BENCHMARKS.md on this machine (~30 min on 2 cores): builds release binaries, starts the broker
# and ClickHouse, runs scripts/bench.py (criterion hot path, reference servers, ingest, the real
# pipeline, memory) and rewrites BENCHMARKS.md with the figures of this run. Loopback only.
#   SOAK_SECS=600 scripts/bench.sh     # the 10-minute RSS soak
#   STEP_SECS, P99_MS, SINK_EVENTS     # step length, the max-sustainable p99 bound, sink drain size
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh start
echo "== building release binaries"
cargo build --release --quiet -p bluetick -p bluetick-loadtest --bins
exec python3 scripts/bench.py
