#!/usr/bin/env bash
# Runs bluetick's checks against real services: installs and starts the broker and ClickHouse
# (scripts/services.sh), then formatting, lints and every test; stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh start
trap 'scripts/services.sh stop' EXIT

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --workspace --all-targets -- --skip nothing_answered_200_is_ever_lost_or_doubled
echo "== fault suite (tests/faults/)"
cargo test --test faults -- --nocapture
