# stopper — the two commands a user needs: `make demo` and `make test`.
# Every area has its own sub-Makefile; this file builds the library once and hands
# the paths down through the environment (STOPPER_ROOT, STOPPER_LIBDIR, STOPPER_INCDIR,
# STOPPER_PYTHON).

SHELL      := /bin/bash
CARGO      ?= cargo
PREFIX     ?= /usr/local
PYTHON     ?= python3
VERSION    := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
MAJOR      := $(firstword $(subst ., ,$(VERSION)))

export STOPPER_ROOT   := $(CURDIR)
export STOPPER_LIBDIR := $(CURDIR)/build/lib
export STOPPER_INCDIR := $(CURDIR)/include
export STOPPER_VENV   := $(CURDIR)/.venv
export STOPPER_PYTHON := $(STOPPER_VENV)/bin/python

RELEASE_SO := target/release/libstopper.so
LIB_SO     := build/lib/libstopper.so.$(VERSION)

.PHONY: wheel test-pythons test-packaging test-lint test-install test-unload check-loom test-loom bench-smoke header all build lib test test-rust test-header test-c test-cpp test-python demo bench \
        install uninstall clean venv check-header

all: build

# ---------------------------------------------------------------- build
build: lib

lib: $(LIB_SO)

# cargo decides what is stale; the rule always asks it, then refreshes build/lib.
$(LIB_SO): FORCE
	$(CARGO) build --release --locked
	@mkdir -p build/lib
	@cp -f $(RELEASE_SO) $(LIB_SO).tmp && mv -f $(LIB_SO).tmp $(LIB_SO)
	@ln -sf libstopper.so.$(VERSION) build/lib/libstopper.so.$(MAJOR)
	@ln -sf libstopper.so.$(MAJOR) build/lib/libstopper.so
	@cp -f target/release/libstopper.a build/lib/libstopper.a
	@./scripts/gen-pc.sh "$(CURDIR)/build" "$(VERSION)" > build/lib/stopper.pc

FORCE:

# Regenerate include/stopper.h after changing an exported item (then commit it).
header:
	STOPPER_UPDATE_HEADER=1 $(CARGO) build --release --locked

# The checked-in header must be exactly what build.rs generates (build.rs also fails the
# build when they differ, unless STOPPER_UPDATE_HEADER=1).
check-header: lib
	git diff --exit-code -- include/stopper.h

# ---------------------------------------------------------------- python venv
venv: $(STOPPER_VENV)/.ok

$(STOPPER_VENV)/.ok: bindings/python/requirements-dev.txt
	$(PYTHON) -m venv $(STOPPER_VENV)
	$(STOPPER_VENV)/bin/pip install --quiet --disable-pip-version-check -r bindings/python/requirements-dev.txt
	@touch $@

# ---------------------------------------------------------------- python packaging
# `make wheel`: the one wheel (py3-none-<platform>, manylinux-tagged by auditwheel) in
# build/wheelhouse, built by setuptools-rust's cargo run (bindings/python/setup.py); cargo's
# output stays in build/cargo-python. `make test-pythons`: that wheel on every CPython listed
# that is installed (pyenv's, or pythonX.Y on PATH), the Python suite in a fresh venv of each.
# `make test-packaging`: pip install / sdist / wheel / no-cargo / broken-library checks from a
# fresh copy of the repository, without `make lib` (tests/packaging/test-packaging.sh).
PYTHON_VERSIONS ?= 3.8 3.9 3.10 3.11 3.12 3.13
WHEELHOUSE      := build/wheelhouse

wheel:
	./tests/packaging/build-wheel.sh $(WHEELHOUSE)

test-pythons: wheel
	./tests/packaging/test-pythons.sh $(WHEELHOUSE) $(PYTHON_VERSIONS)

test-packaging:
	./tests/packaging/test-packaging.sh

# ---------------------------------------------------------------- tests
test: test-lint test-rust test-loom test-header test-c test-cpp test-python test-packaging test-unload test-install test-reliability bench-smoke
	@echo "make test: all suites passed"

# Hygiene gates: formatting, clippy on every target with warnings as errors, rustdoc with
# warnings as errors (broken intra-doc links fail here).
test-lint:
	./scripts/check-layers.sh
	$(CARGO) fmt --all --check
	$(CARGO) clippy --all-targets --locked -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --locked

test-rust:
	$(CARGO) test --release --locked

test-header: lib
	$(MAKE) -C tests/header test

test-c: lib
	$(MAKE) -C tests/c test

test-cpp: lib
	$(MAKE) -C tests/cpp test

test-python: lib venv
	$(MAKE) -C tests/python test

# `make install` into a temporary prefix; programs built through pkg-config only.
test-install: lib
	$(MAKE) -C tests/install test

# A host without libstopper loads and unloads a plugin that uses it: nothing may remain.
test-unload: lib
	$(MAKE) -C tests/unload test

# ---------------------------------------------------------------- demo, bench
demo: lib venv
	$(MAKE) -C examples/c demo
	$(MAKE) -C examples/python demo
	$(MAKE) -C examples/cpp demo
	$(MAKE) -C examples/plugin-host demo

bench: lib venv
	$(MAKE) -C benches bench

# Every benchmark program once with tiny counts: keeps `make bench` from rotting.
bench-smoke: lib venv
	$(MAKE) -C benches bench-smoke

# ---------------------------------------------------------------- reliability
# The loom model of the core state machine (tests/loom.rs, src/base/sync.rs), in its own target
# directory because --cfg loom rebuilds everything. check-loom explores more interleavings than
# the slice that `make test` runs.
LOOM_CARGO = RUSTFLAGS="--cfg loom" $(CARGO) test --release --locked --target-dir target/loom --test loom

check-loom:
	LOOM_MAX_PREEMPTIONS=3 $(LOOM_CARGO)

test-loom:
	LOOM_MAX_PREEMPTIONS=2 $(LOOM_CARGO)

# check, check-miri, check-sanitizers, fuzz, stress… and the bounded slice `make test` runs.
-include mk/check.mk

# ---------------------------------------------------------------- install
install: lib
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 0755 $(LIB_SO) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libstopper.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libstopper.so.$(MAJOR)
	ln -sf libstopper.so.$(MAJOR) $(DESTDIR)$(PREFIX)/lib/libstopper.so
	install -m 0644 build/lib/libstopper.a $(DESTDIR)$(PREFIX)/lib/
	install -m 0644 include/stopper.h $(DESTDIR)$(PREFIX)/include/
	install -m 0644 bindings/cpp/stopper.hpp $(DESTDIR)$(PREFIX)/include/
	./scripts/gen-pc.sh "$(PREFIX)" "$(VERSION)" > $(DESTDIR)$(PREFIX)/lib/pkgconfig/stopper.pc
	install -d $(DESTDIR)$(PREFIX)/lib/cmake/stopper
	./scripts/gen-cmake-config.sh $(DESTDIR)$(PREFIX)/lib/cmake/stopper "$(VERSION)"

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/lib/libstopper.so* $(DESTDIR)$(PREFIX)/lib/libstopper.a \
	      $(DESTDIR)$(PREFIX)/include/stopper.h $(DESTDIR)$(PREFIX)/include/stopper.hpp \
	      $(DESTDIR)$(PREFIX)/lib/pkgconfig/stopper.pc \
	      $(DESTDIR)$(PREFIX)/lib/cmake/stopper/stopperConfig.cmake \
	      $(DESTDIR)$(PREFIX)/lib/cmake/stopper/stopperConfigVersion.cmake
	-rmdir $(DESTDIR)$(PREFIX)/lib/cmake/stopper 2>/dev/null

clean:
	$(CARGO) clean
	rm -rf build
	rm -rf target/loom
	-for d in tests/header tests/c tests/cpp tests/python tests/unload tests/install examples/c examples/python examples/cpp \
	          examples/plugin-host benches; do \
	    [ -f $$d/Makefile ] && $(MAKE) -C $$d clean; done
