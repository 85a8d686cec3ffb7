# Reliability checks of stopper (included by the top Makefile; also usable directly with
# `make -f mk/check.mk <target>`). What each one covers: docs/reliability.md.
#
#   make check             everything below, plus the loom model (check-loom, top Makefile)
#   make check-miri        Miri over the unit tests and the integration tests it can interpret
#   make check-sanitizers  check-tsan + check-asan + check-valgrind
#   make check-tsan        ThreadSanitizer: Rust tests + the C suite on an instrumented library
#   make check-asan        AddressSanitizer (+LeakSanitizer): likewise
#   make check-valgrind    valgrind memcheck: the C suite, the fuzzer and the stress
#   make fuzz              the FFI fuzzer for FUZZ_SECS (300) seconds
#   make stress            the race stress at STRESS_ITERS (10^7) iterations
#   make test-reliability  the bounded slice for `make test` (~1.5 min: fuzz 30 s, stress
#                          10^5, fuzzer + stress under valgrind, C suite under ASan+UBSan)
# The nightly toolchain and its miri/rust-src components are installed by the scripts when
# missing (rustup); valgrind through apt-get when missing and run as root.

STOPPER_ROOT ?= $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)
CHECK_SCRIPTS := $(STOPPER_ROOT)/scripts/check
FUZZ_SECS     ?= 300
STRESS_ITERS  ?= 10000000

.PHONY: check check-miri check-sanitizers check-tsan check-asan check-valgrind fuzz stress \
        test-reliability clean-check

check: check-miri check-sanitizers fuzz stress
	$(MAKE) -C $(STOPPER_ROOT) check-loom
	@echo "make check: all reliability checks passed"

check-miri:
	$(CHECK_SCRIPTS)/miri.sh

check-sanitizers: check-tsan check-asan check-valgrind

check-tsan:
	$(CHECK_SCRIPTS)/sanitizer.sh thread

check-asan:
	$(CHECK_SCRIPTS)/sanitizer.sh address

check-valgrind:
	$(CHECK_SCRIPTS)/valgrind.sh all

fuzz:
	$(CHECK_SCRIPTS)/fuzz.sh $(FUZZ_SECS)

stress:
	$(CHECK_SCRIPTS)/stress.sh $(STRESS_ITERS)

test-reliability:
	$(CHECK_SCRIPTS)/reliability.sh

# The sanitizer builds live in their own target directories.
clean-check:
	rm -rf $(STOPPER_ROOT)/target/san-thread $(STOPPER_ROOT)/target/san-address $(STOPPER_ROOT)/target/miri
