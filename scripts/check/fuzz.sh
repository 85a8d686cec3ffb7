#!/usr/bin/env bash
# The FFI fuzzer (tests/fuzz_ffi.rs) for a bounded time: scripts/check/fuzz.sh [seconds]
# (default $STOPPER_FUZZ_SECS or 300). Prints the cases, operations and seeds it ran, and the
# count of every (function, status) pair it saw. STOPPER_FUZZ_SEED replays a seed.
source "$(dirname "$0")/lib.sh"

SECS="${1:-${STOPPER_FUZZ_SECS:-300}}"
say "FFI fuzzer for ${SECS} s"
cd "$ROOT"
STOPPER_FUZZ_SECS="$SECS" timed "fuzzer" \
    "$CARGO" test --release --locked --test fuzz_ffi ffi_sequences_follow_the_contract -- --nocapture --test-threads=1
