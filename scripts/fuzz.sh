#!/usr/bin/env bash
# A long fuzz run of ingest's parse → split → mask → encode path (tests/fuzz_parse.rs):
# arbitrary mutations of the seeds in tests/fixtures/ and tests/corpus/, checked for panics,
# leaked content or numbers, and events the sink could not read back. CI runs the same
# properties with 256 cases each; this runs CASES (default 200000) per property, optimized.
# Needs no services. A failure is saved to tests/fuzz_parse.proptest-regressions, which the
# next run (and CI) replays first.
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${CASES:-200000}"
echo "fuzzing with $PROPTEST_CASES cases per property"
time cargo test --release --test fuzz_parse -- --nocapture
