#!/usr/bin/env bash
# Miri (nightly) over what it can interpret: scripts/check/miri.sh
# Runs the library's unit tests and the integration tests that use only what Miri emulates
# (threads, futexes, the monotonic clock, eventfd-free paths); see docs/reliability.md for
# what is excluded and why. Miri checks every step for undefined behaviour: use after free,
# data races, invalid pointers (provenance), leaks at exit, misaligned or uninitialised reads.
source "$(dirname "$0")/lib.sh"

need_nightly miri rust-src
cd "$ROOT"
export MIRIFLAGS="${MIRIFLAGS:-}"
export PROPTEST_CASES="${MIRI_FUZZ_CASES:-4}"
export STOPPER_STRESS_ITERS="${MIRI_STRESS_ITERS:-30}"

# Integration tests Miri cannot run: a system call it does not emulate (poll/ppoll, signal,
# sigaction, shm_open, pidfd, fork) or file access under its isolation (/proc, the sources).
# tests/processes.rs (shared memory, pidfd, fork) and tests/loom.rs (--cfg loom) are left out
# whole; every other test of the files below runs.
SKIP=(
    checked_in_header_declares_every_export     # ffi.rs: reads include/ and src/
    install_signal_refuses_what_it_must         # ffi.rs: signal()/sigaction
    released_children_are_unlinked_memory_stays_flat   # core.rs: /proc/self/statm
    descriptor_polls_readable_from_the_stop_on  # time.rs: poll
    wait_fd_data_stop_timeout_and_bad_fds       # time.rs: ppoll
    descriptors_and_deadlines_end_with_the_stopper     # fd_lifetime.rs: readlink /proc
    a_channel_of_the_largest_capacity_allocates_nothing_up_front  # chan.rs: /proc/self/statm
)
# Tests that reach an open library defect Miri reports (docs/reliability.md); skipped unless
# MIRI_STRICT=1, so that the rest keeps running. Empty this list when the defect is fixed.
KNOWN_DEFECT_SKIPS=(
    # none open: D5 (C function pointers without provenance) is fixed
)
skip_args=()
for s in "${SKIP[@]}"; do skip_args+=(--skip "$s"); done
if [ "${MIRI_STRICT:-0}" != 1 ]; then
    for s in "${KNOWN_DEFECT_SKIPS[@]}"; do skip_args+=(--skip "$s"); done
    [ ${#KNOWN_DEFECT_SKIPS[@]} -eq 0 ] || echo "miri: skipping ${#KNOWN_DEFECT_SKIPS[@]} tests that reach an open defect (MIRI_STRICT=1 runs them)"
fi

say "Miri: unit tests (slab, boundary, layout)"
timed "miri --lib" "$CARGO" +"$NIGHTLY" miri test --locked --lib
for t in ${MIRI_TESTS:-ffi core workers chan time stress fuzz_ffi async}; do
    say "Miri: tests/$t.rs"
    timed "miri --test $t" "$CARGO" +"$NIGHTLY" miri test --locked --test "$t" -- "${skip_args[@]}"
done
# The regressions of the defects Miri found (docs/reliability.md): D5, D6. They run in
# tests/fuzz_ffi.rs above too; named here so a regression is reported by name.
for d in d5 d6; do
    say "Miri: the ${d^^} regression test"
    timed "miri defect_$d" "$CARGO" +"$NIGHTLY" miri test --locked --test fuzz_ffi -- "defect_$d"
done
echo "miri: no undefined behaviour found in what ran"
