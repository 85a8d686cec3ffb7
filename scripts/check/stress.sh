#!/usr/bin/env bash
# The race stress (tests/stress.rs): scripts/check/stress.sh [iterations]
# (default $STOPPER_STRESS_ITERS or 10^7 for the main races; the others run a tenth).
# Each race prints its figures (lost wake-ups, unregister outcomes, winners…).
source "$(dirname "$0")/lib.sh"

ITERS="${1:-${STOPPER_STRESS_ITERS:-10000000}}"
say "race stress, $ITERS iterations"
cd "$ROOT"
STOPPER_STRESS_ITERS="$ITERS" timed "stress" \
    "$CARGO" test --release --locked --test stress -- --nocapture --test-threads=1
