"""timeout(): fired and not fired, as context manager and decorator, in waits, nested, and
never after the block has exited."""

import threading
import time

import pytest

import stopper
from stopper import _core


def spin_forever():
    while True:
        pass


def test_fires_in_busy_loop():
    t0 = time.monotonic()
    with pytest.raises(stopper.Timeout) as ei:
        with stopper.timeout(0.05) as t:
            spin_forever()
    dt = time.monotonic() - t0
    assert 0.04 < dt < 1.0
    assert t.expired is True
    assert isinstance(ei.value, stopper.StopRequested)


def test_not_fired_leaves_no_trace():
    with stopper.timeout(0.5) as t:
        x = sum(range(1000))
    assert x == 499500
    assert t.expired is False
    # the deadline was disarmed: nothing arrives later
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.7:
        pass
    assert not _core._state().stack


def test_fires_inside_stopper_wait_at_once():
    s = stopper.Stopper()
    t0 = time.monotonic()
    with pytest.raises(stopper.Timeout):
        with stopper.timeout(0.05):
            s.wait(30)
    assert time.monotonic() - t0 < 1.0


def test_fires_inside_channel_get_at_once():
    t0 = time.monotonic()
    with pytest.raises(stopper.Timeout):
        with stopper.timeout(0.05):
            stopper.Channel().get()
    assert time.monotonic() - t0 < 1.0


def test_decorator_fresh_scope_per_call():
    calls = []

    @stopper.timeout(0.05)
    def work(n):
        calls.append(n)
        if n:
            spin_forever()
        return "ok"

    assert work(0) == "ok"
    with pytest.raises(stopper.Timeout):
        work(1)
    assert work(0) == "ok"
    assert calls == [0, 1, 0]
    assert work.__name__ == "work"


def test_reuse_and_nesting_rules():
    t = stopper.timeout(1)
    with t:
        with pytest.raises(RuntimeError):
            with t:
                pass
    with t:  # reusable once the block ended
        pass
    with pytest.raises(stopper.Timeout):
        with stopper.timeout(5):
            with stopper.timeout(0.03):
                spin_forever()


def test_inner_timeout_caught_then_outer_fires():
    t0 = time.monotonic()
    with pytest.raises(stopper.Timeout):
        with stopper.timeout(0.15) as outer:
            try:
                with stopper.timeout(0.03):
                    spin_forever()
            except stopper.Timeout:
                pass
            spin_forever()
    assert outer.expired
    assert 0.1 < time.monotonic() - t0 < 2


def test_outer_fires_while_inner_holds_caught_delivery():
    """The inner Timeout is swallowed inside the inner block; the outer deadline passes while
    the inner block still runs; the outer Timeout must arrive when the inner block ends."""
    with pytest.raises(stopper.Timeout):
        with stopper.timeout(0.1) as outer:
            with stopper.timeout(0.02):
                try:
                    spin_forever()
                except stopper.Timeout:
                    pass
                t1 = time.monotonic() + 0.2
                while time.monotonic() < t1:
                    pass
            spin_forever()
    assert outer.expired


def test_zero_and_none():
    with pytest.raises(stopper.Timeout):
        with stopper.timeout(0):
            spin_forever()
    with stopper.timeout(None) as t:
        time.sleep(0.01)
    assert not t.expired


def test_bad_input():
    with pytest.raises(ValueError):
        stopper.timeout(-1)
    with pytest.raises(TypeError):
        stopper.timeout("1")
    with pytest.raises(TypeError):
        stopper.timeout(True)
    with pytest.raises(ValueError):
        stopper.timeout(float("nan"))
    with pytest.raises(TypeError):
        stopper.timeout(1)(42)


def test_inside_interruptible_thread_both_kinds():
    out = []

    def run():
        try:
            with stopper.timeout(0.02):
                spin_forever()
        except stopper.Timeout:
            out.append("timeout")
        try:
            with stopper.timeout(30):
                spin_forever()
        except stopper.Timeout:
            out.append("wrong")
        except stopper.StopRequested:
            out.append("stop")
            raise

    t = stopper.StoppableThread(target=run, interrupt=True)
    t.start()
    time.sleep(0.2)
    t.join(5)
    assert not t.is_alive()
    assert out == ["timeout", "stop"]


def test_never_fires_after_the_block_exited():
    """Blocks that end around their deadline, many times: a Timeout either comes out of the
    with statement or not at all, never in the code after it."""
    # A busy thread lets the service thread's delivery in at the GIL switch interval (5 ms):
    # blocks ending from 2 ms before to 12 ms after the deadline cover both sides of the exit.
    late = fired = 0
    for i in range(240):
        deadline = 0.001 * (i % 4)
        run_for = deadline + 0.001 * ((i % 15) - 2)
        try:
            with stopper.timeout(deadline):
                end = time.monotonic() + run_for
                while time.monotonic() < end:
                    pass
        except stopper.Timeout:
            fired += 1
            continue
        try:
            y = 0
            for _ in range(3000):  # plenty of eval-breaker checks
                y += 1
        except stopper.Timeout:
            late += 1
    assert late == 0
    assert 0 < fired < 240
    assert not _core._state().stack
    assert _core._state().delivered_by is None


def test_with_blocks_inside_interrupted_timeout_are_unwound():
    """A Timeout fired at a plain `with s:` exit still leaves the scope stack consistent."""
    for i in range(200):
        s = stopper.Stopper()
        try:
            with stopper.timeout(0.0001 * (i % 5)):
                while True:
                    with s:
                        pass
        except stopper.Timeout:
            pass
        assert stopper.current() is None
        assert not _core._state().stack


def test_timeout_in_many_threads():
    errors = []

    def worker(i):
        try:
            for k in range(20):
                fired = False
                try:
                    with stopper.timeout(0.002 if k % 2 else 5):
                        if k % 2:
                            spin_forever()
                        stopper.Stopper().wait(0.0001)
                except stopper.Timeout:
                    fired = True
                assert fired == bool(k % 2)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(20)
    assert errors == []
