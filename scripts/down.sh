#!/usr/bin/env bash
# Stops what scripts/up.sh started: bluetick processes, then the broker and ClickHouse.
set -euo pipefail
cd "$(dirname "$0")/.."
for name in sink ingest; do
  pidfile=.run/$name.pid
  if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
      # Let it finish: ingest flushes its producer, the sink stores its batch and leaves
      # its consumer group before the broker goes away.
      for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      echo "stopped $name (pid $pid)"
    fi
    rm -f "$pidfile"
  fi
done
scripts/services.sh stop
