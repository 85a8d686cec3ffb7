"""Shared helpers for the stopper Python suite (tests the *installed* package)."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import stopper

# The installed package must be under test, not a source tree.
assert "site-packages" in stopper.__file__, stopper.__file__


def run_python(code, timeout=20, env=None):
    """Runs ``code`` in a fresh interpreter; returns (returncode, stdout, stderr)."""
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run(
        # (-W: the package's RuntimeWarning about async mode on CPython 3.13 is not a failure)
        [sys.executable, "-X", "faulthandler", "-W", "ignore::RuntimeWarning", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=e,
    )
    return p.returncode, p.stdout, p.stderr


@pytest.fixture
def hook_errors():
    """Collects what threading.excepthook would report during the test's call.

    The hook is set by ``pytest_runtest_call`` below, around the call itself: pytest 8.3 (the
    last release for Python 3.8) installs its own ``threading.excepthook`` after the fixtures
    ran, which would replace one set here.
    """
    return []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    seen = getattr(item, "funcargs", {}).get("hook_errors")
    if seen is None:
        yield
        return
    previous = threading.excepthook
    threading.excepthook = lambda args: seen.append(args.exc_value)
    try:
        yield
    finally:
        threading.excepthook = previous


def later(delay, fn, *args):
    """Calls fn(*args) on a new thread after ``delay`` seconds; returns the thread."""
    def go():
        time.sleep(delay)
        fn(*args)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


@pytest.fixture(autouse=True)
def _no_leftover_scope():
    """Every test leaves the main thread outside any stopper."""
    yield
    from stopper import _delivery

    st = _delivery.state()
    leaked = bool(st.stack)
    _delivery.unwind(0)  # one failing test must not fail every later one
    assert not leaked, "a scope was left entered"
    assert stopper.current() is None
    assert not st.stack and not st.shields
    assert st.hold == 0 and st.scheduled == [] and st.cp is None
    assert _delivery.checkpoint_stopper() is None
