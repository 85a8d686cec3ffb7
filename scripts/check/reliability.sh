#!/usr/bin/env bash
# The bounded slice of the reliability checks that `make test` runs (target test-reliability):
# each kind of check once, small enough for CI (about 1.5 minutes here once the release test
# binaries are built; `make test` builds them in test-rust):
#   1. the FFI fuzzer for $REL_FUZZ_SECS (30) seconds,
#   2. the race stress at $REL_STRESS_ITERS (10^5) iterations,
#   3. the fuzzer and the stress under valgrind memcheck (0 errors, 0 bytes definitely lost),
#   4. the C suite built with AddressSanitizer + UBSan (tests/c test-asan).
# The full checks (`make check`): Miri, TSan/ASan-instrumented library, valgrind over the C
# suite, a longer fuzz, the 10^7 stress, loom.
source "$(dirname "$0")/lib.sh"

t0=$(date +%s)
cd "$ROOT"
need_lib
"$CHECK_DIR/fuzz.sh" "${REL_FUZZ_SECS:-30}"
"$CHECK_DIR/stress.sh" "${REL_STRESS_ITERS:-100000}"
"$CHECK_DIR/valgrind.sh" rust
say "AddressSanitizer + UBSan: the C suite (tests/c test-asan)"
timed "C suite under ASan" c_suite test-asan
echo "test-reliability: all passed in $(( $(date +%s) - t0 )) s"
