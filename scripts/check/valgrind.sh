#!/usr/bin/env bash
# valgrind memcheck: 0 errors and 0 bytes definitely lost.
#   scripts/check/valgrind.sh [c|rust|all]
# 1. The C suite (tests/c's own `test-valgrind` target: --leak-check=full, --error-exitcode=1)
#    against the release libstopper.so; a definite leak counts as an error there.
# 2. The Rust FFI fuzzer and the race stress (release test binaries, small counts) under
#    memcheck with the same rules, errors-for-leak-kinds=definite.
source "$(dirname "$0")/lib.sh"

PART="${1:-all}"
need_tool valgrind
VG=(valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite)

c_part() {
    need_lib
    say "valgrind memcheck: the C suite (tests/c test-valgrind)"
    timed "C suite under valgrind" c_suite test-valgrind
}

rust_part() {
    say "valgrind memcheck: FFI fuzzer and race stress (release test binaries)"
    local json bins=()
    json="$("$CARGO" test --release --locked --test fuzz_ffi --test stress --no-run --message-format=json 2>/dev/null)"
    mapfile -t bins < <(grep -o '"executable":"[^"]*"' <<<"$json" | cut -d'"' -f4)
    [ "${#bins[@]}" -eq 2 ] || die "could not find the test binaries"
    for b in "${bins[@]}"; do
        PROPTEST_CASES="${VG_FUZZ_CASES:-96}" STOPPER_STRESS_ITERS="${VG_STRESS_ITERS:-5000}" \
            timed "$(basename "$b") under valgrind" "${VG[@]}" "$b" --test-threads=1 -q
    done
}

case "$PART" in
    c) c_part ;;
    rust) rust_part ;;
    all) c_part; rust_part ;;
    *) die "unknown part $PART (c, rust or all)" ;;
esac
echo "valgrind: 0 errors, 0 bytes definitely lost"
