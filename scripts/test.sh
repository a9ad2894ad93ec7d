#!/usr/bin/env bash
# Runs bluetick's checks against real services: installs and starts the broker and ClickHouse
# (scripts/services.sh), then formatting, lints and every test; stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh start
trap 'scripts/services.sh stop' EXIT

# Runs a step under a bound, so that a step that hangs fails the run naming itself instead of
# holding CI until its own limit. `timeout` signals the step's whole process group: the test
# binaries and the servers they started.
bounded() {
  local minutes=$1 name=$2
  shift 2
  local rc=0
  timeout --kill-after=30s "${minutes}m" "$@" || rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "!! $name did not finish within $minutes minutes" >&2
  fi
  return "$rc"
}

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== deploy files: kubectl kustomize, kubernetes-validate --strict, promtool"
scripts/check-deploy.sh
echo "== cargo test"
# Test harnesses only: the fault suite runs on its own below, with its table printed.
bounded 40 "cargo test" cargo test --workspace --lib --bins --tests -- --skip nothing_answered_200_is_ever_lost_or_doubled \
  --skip two_sinks_fill_a_replicated_sharded_cluster
echo "== cluster (tests/cluster.rs: ZooKeeper and three ClickHouse servers of their own)"
bounded 15 "the cluster test" cargo test --test cluster -- --nocapture
echo "== benches, once each in test mode"
# Criterion's harness takes no libtest flags such as --skip, so benches get their own run.
bounded 20 "the benches" cargo test --workspace --benches
echo "== fault suite (tests/faults/)"
bounded 20 "the fault suite" cargo test --test faults -- --nocapture
