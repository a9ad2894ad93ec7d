#!/usr/bin/env bash
# Stops what scripts/up.sh started: bluetick processes, then the broker and ClickHouse.
set -euo pipefail
cd "$(dirname "$0")/.."
for name in ingest; do
  pidfile=.run/$name.pid
  if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null && echo "stopped $name (pid $pid)" || true
    rm -f "$pidfile"
  fi
done
scripts/services.sh stop
