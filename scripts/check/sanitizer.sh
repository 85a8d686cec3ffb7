#!/usr/bin/env bash
# ThreadSanitizer or AddressSanitizer over the library, with proof that it was really linked:
#   scripts/check/sanitizer.sh thread|address [rust|c|all]
# 1. The Rust integration tests (the race stress, the FFI fuzzer, the core/worker/channel/time/
#    C-boundary suites) built with nightly `-Zsanitizer=<kind> -Zbuild-std` (std itself is
#    instrumented too); the runtime's symbols are looked up in a test binary with nm.
# 2. libstopper.so built the same way, then the C suite (tests/c) built with gcc's
#    -fsanitize=<kind> and run against it, through tests/c's own targets (`test-asan` for
#    address, `test-dynamic` with CC="gcc -fsanitize=thread" for thread); the library's imports
#    of the sanitizer's hooks (nm -D) and the executable's runtime (ldd) are shown.
# Any sanitizer report fails the run (halt_on_error / exitcode). Sizes are env-tunable:
# SAN_STRESS_ITERS (100000), SAN_FUZZ_CASES (128), SAN_TESTS (the list below).
source "$(dirname "$0")/lib.sh"

KIND="${1:?usage: sanitizer.sh thread|address [rust|c|all]}"
PART="${2:-all}"
case "$KIND" in
    thread) SHORT=tsan ;;
    address) SHORT=asan ;;
    *) die "unknown sanitizer $KIND (thread or address)" ;;
esac

need_nightly rust-src
TD="$ROOT/target/san-$KIND"
export RUSTFLAGS="-Zsanitizer=$KIND -Cforce-frame-pointers=yes"
export RUSTDOCFLAGS="$RUSTFLAGS"
# Some optimisation keeps instrumented tests from crawling; debug assertions stay on.
export CARGO_PROFILE_DEV_OPT_LEVEL=1
export CARGO_PROFILE_DEV_DEBUG=line-tables-only
SAN_FLAGS=(-Zbuild-std --target "$TARGET_TRIPLE" --target-dir "$TD" --locked)
SAN_TESTS="${SAN_TESTS:-core workers chan time ffi fd_lifetime stress fuzz_ffi}"
SUPP="$CHECK_DIR/$SHORT.supp"
# Skipped under a sanitizer: core.rs's resident-set measurement (the sanitizer's shadow memory
# and allocator grow the RSS by themselves).

case "$KIND" in
    thread)
        # report_thread_leaks=0: the library keeps the handle of its finished, idle service
        # thread until the next deadline or the library's unload (then joins it); a test
        # process that ends in between is not a leak of ours.
        export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 history_size=4 report_signal_unsafe=0 report_thread_leaks=0 suppressions=$SUPP ${TSAN_OPTIONS:-}"
        ;;
    address)
        export ASAN_OPTIONS="detect_leaks=1 halt_on_error=1 detect_stack_use_after_return=1 strict_init_order=1 ${ASAN_OPTIONS:-}"
        export LSAN_OPTIONS="suppressions=$SUPP ${LSAN_OPTIONS:-}"
        ;;
esac

rust_part() {
    say "$KIND sanitizer: Rust tests ($SAN_TESTS), std instrumented too"
    local args=()
    for t in $SAN_TESTS; do args+=(--test "$t"); done
    # Build first (quietly), then find one test binary and prove the runtime is in it.
    timed "build ($KIND)" "$CARGO" +"$NIGHTLY" test "${SAN_FLAGS[@]}" --lib "${args[@]}" --no-run
    local bin
    bin="$(ls -t "$TD/$TARGET_TRIPLE/debug/deps/"stress-* | grep -v '\.d$' | head -1)"
    local n
    n="$(nm "$bin" | grep -c " T __${SHORT}_init\| T __${SHORT}_" || true)"
    [ "$n" -gt 0 ] || die "$bin has no __${SHORT}_* symbols: the sanitizer was not linked"
    echo "-- $(basename "$bin"): $n __${SHORT}_* runtime symbols (nm), e.g. $(nm "$bin" | grep -o "__${SHORT}_init" | head -1)"
    STOPPER_STRESS_ITERS="${SAN_STRESS_ITERS:-100000}" PROPTEST_CASES="${SAN_FUZZ_CASES:-128}" \
        timed "Rust tests under $KIND sanitizer" "$CARGO" +"$NIGHTLY" test "${SAN_FLAGS[@]}" --lib "${args[@]}" -- --test-threads=2 \
            --skip released_children_are_unlinked_memory_stays_flat
}

c_part() {
    say "$KIND sanitizer: libstopper.so instrumented, the C suite built with -fsanitize=$KIND"
    local extra=()
    if [ "$KIND" = thread ]; then
        # gcc's libtsan lacks the __tsan_mem* entry points newer LLVM emits: see tsan_shim.c.
        mkdir -p "$TD"
        gcc -O1 -fPIC -fno-builtin -c -o "$TD/tsan_shim.o" "$CHECK_DIR/tsan_shim.c"
        extra=(-- -Clink-arg="$TD/tsan_shim.o")
    fi
    timed "build libstopper.so ($KIND)" "$CARGO" +"$NIGHTLY" rustc "${SAN_FLAGS[@]}" --lib "${extra[@]}"
    local out="$TD/$TARGET_TRIPLE/debug" lib="$TD/c-lib" build="$TD/c-build"
    mkdir -p "$lib" "$build"
    cp -f "$out/libstopper.so" "$lib/libstopper.so.0"
    ln -sf libstopper.so.0 "$lib/libstopper.so"
    cp -f "$out/libstopper.a" "$lib/libstopper.a"
    local hooks
    hooks="$(nm -D "$lib/libstopper.so.0" | grep -c " U __${SHORT}_" || true)"
    [ "$hooks" -gt 0 ] || die "libstopper.so has no __${SHORT}_* imports: not instrumented"
    echo "-- libstopper.so imports $hooks __${SHORT}_* hooks (nm -D), e.g. $(nm -D "$lib/libstopper.so.0" | grep -o " __${SHORT}_[a-z_0-9]*" | head -3 | tr '\n' ' ')"
    # A fresh build of the suite against this library (its own rules, our directories).
    rm -rf "$build"/test_stopper* "$build"/obj
    case "$KIND" in
        address)
            c_suite "$build/test_stopper_asan" STOPPER_LIBDIR="$lib" B="$build"
            echo "-- $(ldd "$build/test_stopper_asan" | grep -o 'libasan[^ ]*' | head -1) + $(ldd "$build/test_stopper_asan" | grep -o "$lib/libstopper[^ ]*")"
            timed "C suite under $KIND sanitizer" c_suite test-asan STOPPER_LIBDIR="$lib" B="$build"
            ;;
        thread)
            c_suite "$build/test_stopper" STOPPER_LIBDIR="$lib" B="$build" CC="gcc -fsanitize=thread" CFLAGS="-O1 -g"
            echo "-- $(ldd "$build/test_stopper" | grep -o 'libtsan[^ ]*' | head -1) + $(ldd "$build/test_stopper" | grep -o "$lib/libstopper[^ ]*")"
            # Not under TSan: tests that fork (TSan cannot start threads in the child of a
            # multi-threaded process), use shared memory across processes or dlopen, and tests
            # that count the process's threads (TSan adds its own background thread). The
            # names come from the suite's sources; everything else runs.
            local skip all run=()
            skip="$(cd "$ROOT/tests/c" && { grep -hoE '^TEST(_[A-Z]+)?\([a-z_0-9]*' t_processes.c | sed 's/.*(//';
                awk '/^TEST(_[A-Z]+)?\(/ { n = $0; sub(/^TEST(_[A-Z]+)?\(/, "", n); sub(/[,)].*/, "", n) }
                     /task_count\(\)|fork\(|dlopen|exec[lv]|posix_spawn|stopper_open_shared|single_threaded_again/ { print n }' t_*.c; } | sort -u)"
            mapfile -t all < <("$build/test_stopper" -l)
            for t in "${all[@]}"; do grep -qx "$t" <<<"$skip" || run+=("$t"); done
            echo "-- C suite under TSan: ${#run[@]} of ${#all[@]} tests (the rest fork, share memory, dlopen or count threads)"
            STOPPER_TEST_SLOW=5 timed "C suite under $KIND sanitizer" "$build/test_stopper" "${run[@]}"
            ;;
    esac
}

case "$PART" in
    rust) rust_part ;;
    c) c_part ;;
    all) rust_part; c_part ;;
    *) die "unknown part $PART (rust, c or all)" ;;
esac
echo "$KIND sanitizer: clean"
