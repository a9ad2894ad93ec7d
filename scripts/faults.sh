#!/usr/bin/env bash
# The fault suite (tests/faults/): the whole pipeline as real processes on loopback, one fault
# per scenario — broker killed and restarted, ClickHouse killed and restarted, kill -9 of
# ingest and of sink, Meta-style retries out of order, bad input — then what was answered 200
# compared with what ClickHouse holds. Prints the table; FAULTS=broker,kill picks scenarios
# (broker, clickhouse, kill, retries, bad-input). Starts the services it needs and stops
# what it started. About 3 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh start
trap 'scripts/services.sh stop' EXIT
BLUETICK_FAULTS="${FAULTS:-}" cargo test --test faults -- --nocapture
