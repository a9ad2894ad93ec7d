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
echo "== deploy files: kubectl kustomize, kubernetes-validate --strict, promtool"
scripts/check-deploy.sh
echo "== cargo test"
# Test harnesses only: the fault suite runs on its own below, with its table printed.
cargo test --workspace --lib --bins --tests -- --skip nothing_answered_200_is_ever_lost_or_doubled \
  --skip two_sinks_fill_a_replicated_sharded_cluster
echo "== cluster (tests/cluster.rs: ZooKeeper and three ClickHouse servers of their own)"
cargo test --test cluster -- --nocapture
echo "== benches, once each in test mode"
# Criterion's harness takes no libtest flags such as --skip, so benches get their own run.
cargo test --workspace --benches
echo "== fault suite (tests/faults/)"
cargo test --test faults -- --nocapture
