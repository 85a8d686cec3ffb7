"""timeout(): fired and not fired, as context manager and decorator, in waits, nested, and
never after the block has exited."""

import threading
import time

import pytest

import stopper
from stopper import _delivery

# python/cpython#139622: on 3.13 an async exception raised right after a C call (here
# time.monotonic() in a busy loop) skips the interrupted frame's with/finally blocks.
skip_313 = pytest.mark.skipif(
    _delivery.ASYNC_EXCEPTIONS_SKIP_HANDLERS, reason="CPython 3.13 async-exception bug (cpython#139622)"
)


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
    assert isinstance(ei.value, TimeoutError) and not isinstance(ei.value, stopper.StopRequested)
    assert isinstance(ei.value.__cause__, stopper.StopRequested)
    assert "0.05" in str(ei.value)


def test_not_fired_leaves_no_trace():
    with stopper.timeout(0.5) as t:
        x = sum(range(1000))
    assert x == 499500
    assert t.expired is False
    # the deadline was disarmed: nothing arrives later
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.7:
        pass
    assert not _delivery.state().stack


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


@skip_313
def test_outer_fires_while_inner_holds_caught_delivery():
    """The inner deadline's StopRequested is swallowed inside the inner block; the outer
    deadline passes while the inner block still runs: the block is interrupted again and a
    Timeout comes out."""
    with pytest.raises(stopper.Timeout):
        with stopper.timeout(0.1) as outer:
            with stopper.timeout(0.02):
                try:
                    spin_forever()
                except stopper.StopRequested:
                    pass
                t1 = time.monotonic() + 0.2
                while time.monotonic() < t1:
                    pass
            spin_forever()
    assert outer.expired


def test_zero_and_none():
    ran = []
    for limit in (0, -1, -0.5, 0.0):
        with pytest.raises(stopper.Timeout):
            with stopper.timeout(limit):
                ran.append(limit)
    assert ran == []
    with stopper.timeout(None) as t:
        time.sleep(0.01)
    assert not t.expired


def test_bad_input():
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


@skip_313
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
    assert not _delivery.state().stack
    assert _delivery.state().scheduled == []


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
        assert not _delivery.state().stack


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


# ---------------------------------------------------------------- as asyncio.timeout has it
def test_timeout_is_a_timeout_error_naming_the_limit():
    with pytest.raises(TimeoutError) as ei:
        with stopper.timeout(0.03):
            stopper.sleep(30)
    assert isinstance(ei.value, stopper.Timeout)
    assert "0.03" in str(ei.value) and ei.value.seconds == 0.03
    try:
        with stopper.timeout(0.03):
            spin_forever()
    except Exception as e:  # noqa: BLE001 - at the exit it is an ordinary exception
        assert isinstance(e, stopper.Timeout)


def test_current_inside_is_the_timeouts_stopper_a_child_of_the_enclosing_one():
    assert stopper.current() is None
    with stopper.timeout(30) as t:
        inner = stopper.current()
        assert inner is not None and not inner.is_set()
    s = stopper.Stopper()
    with s:
        with pytest.raises(stopper.StopRequested):
            with stopper.timeout(30, mode="checkpoint") as t:
                c = stopper.current()
                assert c is not s
                s.stop()
                assert c.is_set()
                stopper.current().wait(30)  # the README's advice works inside a timeout
        assert not t.expired  # the enclosing stop, not the deadline: no Timeout


def test_readme_advice_current_wait_obeys_the_timeout():
    t0 = time.monotonic()
    with pytest.raises(stopper.Timeout):
        with stopper.timeout(0.05, mode="checkpoint"):
            stopper.current().wait(30)
    assert time.monotonic() - t0 < 2


def test_expired_deadline_and_reschedule():
    t = stopper.timeout(10)
    assert t.deadline is None and not t.expired
    with pytest.raises(RuntimeError):
        t.reschedule(1)  # not entered
    with t:
        assert abs(t.deadline - (time.monotonic() + 10)) < 1
        t.reschedule(None)
        assert t.deadline is None
        stopper.sleep(0.02)
        t.reschedule(0.05)
        assert abs(t.deadline - (time.monotonic() + 0.05)) < 0.5
        with pytest.raises(ValueError):
            t.reschedule(float("nan"))
    assert not t.expired  # ended before the new deadline
    with pytest.raises(stopper.Timeout):
        with stopper.timeout(30) as t2:
            t2.reschedule(0)
            spin_forever()
    assert t2.expired
    with pytest.raises(stopper.Timeout):
        with stopper.timeout(30, mode="checkpoint") as t3:
            t3.reschedule(-1)
            with pytest.raises(RuntimeError):
                t3.reschedule(5)  # already expired
            stopper.checkpoint()


def test_checkpoint_mode_timeout_only_raises_in_checkpoints():
    with pytest.raises(stopper.Timeout):
        with stopper.timeout(0.02, mode="checkpoint") as t:
            end = time.monotonic() + 0.1
            n = 0
            while time.monotonic() < end:  # no checkpoint: not interrupted
                n += 1
            assert t.expired
            stopper.sleep(30)
    # a block that completes past its deadline without a checkpoint raises nothing
    with stopper.timeout(0.01, mode="checkpoint") as t:
        end = time.monotonic() + 0.05
        while time.monotonic() < end:
            pass
    assert t.expired


def test_nan_is_a_value_error_and_none_never_fires():
    with pytest.raises(ValueError):
        stopper.timeout(float("nan"))
    with stopper.timeout(float("inf")) as t:
        pass
    assert t.deadline is None


def test_both_expired_inner_converts_and_outer_still_fires():
    caught = []
    with pytest.raises(stopper.Timeout) as ei:
        with stopper.timeout(0.1) as outer:
            try:
                with stopper.timeout(0.03) as inner:
                    with stopper.shield():  # busy past both deadlines, not interrupted
                        end = time.monotonic() + 0.2
                        while time.monotonic() < end:
                            pass
                    spin_forever()
            except stopper.Timeout as e:
                caught.append(e.seconds)
            spin_forever()
    assert caught == [0.03]
    assert inner.expired and outer.expired
    assert ei.value.seconds == 0.1


def test_checkpoint_mode_nested_both_expired():
    caught = []
    with pytest.raises(stopper.Timeout) as ei:
        with stopper.timeout(0.06, mode="checkpoint"):
            try:
                with stopper.timeout(0.02, mode="checkpoint"):
                    end = time.monotonic() + 0.15
                    while time.monotonic() < end:
                        pass
                    stopper.checkpoint()
            except stopper.Timeout as e:
                caught.append(e.seconds)
            stopper.sleep(30)
    assert caught == [0.02] and ei.value.seconds == 0.06
