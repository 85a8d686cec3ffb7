"""How a stop reaches a thread: modes, checkpoints, shields, and the no-delivery region."""

import socket
import sqlite3
import threading
import time

import pytest

import stopper
from stopper import _delivery
from conftest import later, run_python

MODES = ["checkpoint", "async"]


def spin(seconds):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


def in_thread(fn, mode, timeout=10):
    """Runs fn(stopper) in a StoppableThread(interrupt=mode); returns (thread, result dict)."""
    out = {"ready": threading.Event()}  # set when fn is about to run (inside the scope)

    def run():
        try:
            out["ready"].set()
            out["value"] = fn(stopper.current())
        except BaseException as e:  # noqa: BLE001
            out["exc"] = e
            out["t"] = time.monotonic()

    t = stopper.StoppableThread(target=run, interrupt=mode, daemon=True)
    return t, out


# ---------------------------------------------------------------- bad input
def test_unknown_modes_are_value_errors():
    s = stopper.Stopper()
    for bad in ("bogus", "", "Async", 1, 0, None, False, object()):
        with pytest.raises(ValueError):
            s.interruptible(bad)
        with pytest.raises(ValueError):
            stopper.timeout(1, mode=bad)
    for bad in ("bogus", 2, "cooperative"):
        with pytest.raises(ValueError):
            stopper.StoppableThread(interrupt=bad)
    assert s.interruptible(True).mode == "async"
    assert stopper.StoppableThread(interrupt=True).interrupt == "async"
    assert stopper.StoppableThread(interrupt=None).interrupt is False


def test_shield_out_of_order_and_reuse():
    a, b = stopper.shield(), stopper.shield()
    a.__enter__()
    b.__enter__()
    with pytest.raises(RuntimeError):
        a.__exit__(None, None, None)
    b.__exit__(None, None, None)
    a.__exit__(None, None, None)
    with pytest.raises(RuntimeError):
        a.__exit__(None, None, None)  # never entered (again)
    sh = stopper.shield()
    with sh:
        with pytest.raises(RuntimeError):
            sh.__enter__()


def test_interruptible_object_is_one_block_at_a_time():
    s = stopper.Stopper()
    scope = s.interruptible()
    with scope as got:
        assert got is s and stopper.current() is s
        with pytest.raises(RuntimeError):
            scope.__enter__()
    assert stopper.current() is None


# ---------------------------------------------------------------- outside any scope
def test_outside_any_scope_checkpoints_are_the_plain_calls():
    done = stopper.Stopper()
    done.stop()
    assert _delivery.checkpoint_stopper() is None
    stopper.checkpoint()  # nothing to raise
    t0 = time.monotonic()
    stopper.sleep(0.02)
    assert time.monotonic() - t0 >= 0.015
    with pytest.raises(ValueError):
        stopper.sleep(-1)  # time.sleep's own error
    with pytest.raises(TypeError):
        stopper.sleep("1")
    assert done.wait(5) is True  # a stopped stopper's wait returns True, as before
    with done:  # a cooperative scope is not interruptible
        assert _delivery.checkpoint_stopper() is None
        stopper.checkpoint()
        stopper.sleep(0)
        assert done.wait(0) is True


def test_shield_hides_the_scope_from_checkpoints():
    s = stopper.Stopper()
    with s.interruptible("checkpoint"):
        s.stop()
        with stopper.shield():
            assert _delivery.checkpoint_stopper() is None
            stopper.checkpoint()
            stopper.sleep(0.001)
        assert _delivery.checkpoint_stopper() is not None
        with pytest.raises(stopper.StopRequested):
            stopper.checkpoint()


# ---------------------------------------------------------------- mode x call x when
CALLS = {
    "checkpoint": lambda: stopper.checkpoint(),
    "sleep": lambda: stopper.sleep(30),
    "wait": lambda: stopper.Stopper().wait(30),
    "wait_any": lambda: stopper.wait_any([stopper.Stopper()], 30),
    "channel_get": lambda: stopper.Channel().get(timeout=30),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("call", sorted(CALLS))
def test_stopped_before_the_call_raises_at_once(mode, call):
    def body(s):
        s.stop(7)
        if mode == "async":
            with stopper.shield():  # keep the async exception out of the way
                pass
        t0 = time.monotonic()
        try:
            CALLS[call]()
        except stopper.StopRequested as e:
            return ("raised", e.reason, time.monotonic() - t0)
        return ("returned",)

    t, out = in_thread(lambda s: body(s), mode)
    t.start()
    threading.Thread.join(t, 10)
    assert "exc" not in out or isinstance(out["exc"], stopper.StopRequested)
    v = out.get("value")
    if mode == "async" and v is None:
        return  # the async exception reached it first: also a stop
    assert v[0] == "raised" and v[1] == 7 and v[2] < 1.0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("call", ["sleep", "wait", "wait_any", "channel_get"])
def test_stopped_while_blocked_leaves_by_stop_requested(mode, call):
    t, out = in_thread(lambda s: CALLS[call](), mode)
    t.start()
    assert out["ready"].wait(10)
    time.sleep(0.05)
    t0 = time.monotonic()
    t.stop()
    threading.Thread.join(t, 10)
    assert isinstance(out.get("exc"), stopper.StopRequested)
    assert type(out["exc"]) is stopper.StopRequested  # raised by the checkpoint, not async
    assert out["t"] - t0 < 1.0


@pytest.mark.parametrize("mode", MODES)
def test_never_stopped_calls_behave_normally(mode):
    def body(s):
        stopper.checkpoint()
        t0 = time.monotonic()
        stopper.sleep(0.02)
        slept = time.monotonic() - t0
        return (slept, stopper.Stopper().wait(0.01), stopper.wait_any([stopper.Stopper()], 0.01))

    t, out = in_thread(body, mode)
    t.start()
    threading.Thread.join(t, 10)  # without stopping it
    slept, waited, which = out["value"]
    assert slept >= 0.015 and waited is False and which is None


@pytest.mark.parametrize("mode", MODES)
def test_main_thread_interruptible(mode):
    s = stopper.Stopper()
    later(0.05, s.stop)
    t0 = time.monotonic()
    with pytest.raises(stopper.StopRequested):
        with s.interruptible(mode):
            assert stopper.current() is s
            assert _delivery.checkpoint_stopper() is s
            if mode == "async":
                spin(30)
            else:
                stopper.sleep(30)
    assert time.monotonic() - t0 < 5
    assert _delivery.checkpoint_stopper() is None


def test_checkpoint_mode_never_raises_between_ordinary_lines():
    s = stopper.Stopper()
    later(0.02, s.stop)
    with s.interruptible("checkpoint"):
        n = spin(0.15)  # no checkpoint: runs to its end
        assert n > 0 and s.is_set()
        with pytest.raises(stopper.StopRequested):
            stopper.checkpoint()


@pytest.mark.parametrize("mode", MODES)
def test_checkpoint_raises_every_time_it_is_reached(mode):
    def body(s):
        caught = 0
        try:
            s.stop()  # async mode: stopping its own scope raises when stop() returns
        except stopper.StopRequested:
            caught -= 1000
        for _ in range(5):
            try:
                with stopper.shield():
                    pass
            except stopper.StopRequested:
                caught += 100  # async mode: the held-back stop, at the shield's exit, once
            for call in (stopper.checkpoint, lambda: stopper.sleep(5), lambda: stopper.Stopper().wait(5)):
                try:
                    call()
                except stopper.StopRequested:
                    caught += 1
        return caught

    t, out = in_thread(body, mode)
    t.start()
    threading.Thread.join(t, 10)
    assert out["value"] == (15 if mode == "checkpoint" else 15 - 1000)


def test_nested_scopes_checkpoint_on_any_of_them():
    a, b = stopper.Stopper(), stopper.Stopper()
    with a.interruptible():
        with b.interruptible():
            cp = _delivery.checkpoint_stopper()
            assert cp is not a and cp is not b
            assert stopper.current() is b
            later(0.05, a.stop)
            with pytest.raises(stopper.StopRequested):
                stopper.sleep(30)
        assert _delivery.checkpoint_stopper() is a
        with pytest.raises(stopper.StopRequested):
            stopper.checkpoint()


# ---------------------------------------------------------------- no second delivery
def test_stop_inside_a_checkpoint_sends_no_async_exception_later():
    """Async mode: a thread stopped while inside a checkpoint leaves it by StopRequested and is
    not also sent an async exception: its cleanup (many eval-breaker checks) runs to the end."""
    for i in range(40):
        done = []
        ready = threading.Event()

        def body(s):
            try:
                ready.set()
                stopper.sleep(30)
            except stopper.StopRequested:
                n = 0
                for _ in range(20000):
                    n += 1
                spin(0.01)
                done.append(n)
                raise

        t, out = in_thread(body, "async")
        t.start()
        assert ready.wait(10)
        time.sleep(0.0005 * (i % 7))
        t.stop()
        threading.Thread.join(t, 10)
        assert done == [20000], i
        assert type(out["exc"]) is stopper.StopRequested


def _interrupted_calls():
    """Blocking C calls that a stop ends with their own error (the recipe: on_stop does what
    ends the call), each wrapped as a checkpoint."""

    def sock_timeout(s):
        a, b = socket.socketpair()
        try:
            a.settimeout(0.2)
            with _delivery.in_checkpoint():
                a.recv(10)  # ends with socket.timeout after the stop
        finally:
            a.close()
            b.close()

    def sqlite_interrupted(s):
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        s.on_stop(lambda r: conn.interrupt())
        try:
            with _delivery.in_checkpoint():
                conn.execute(
                    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"
                ).fetchall()
        finally:
            conn.close()

    def stopper_wait_fd(s):
        a, b = socket.socketpair()
        try:
            stopper.Stopper().wait_readable(a, 30)
        finally:
            a.close()
            b.close()

    return {"socket_timeout": sock_timeout, "sqlite_interrupt": sqlite_interrupted, "wait_fd": stopper_wait_fd}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", sorted(_interrupted_calls()))
def test_cleanup_after_an_interrupted_c_call_runs_completely(mode, kind):
    call = _interrupted_calls()[kind]
    for i in range(5):
        steps = []

        def body(s):
            try:
                call(s)
            except (OSError, sqlite3.OperationalError, stopper.StopRequested) as e:
                steps.append(type(e).__name__)
                for k in range(3):  # the cleanup: several steps, each must run
                    n = 0
                    for _ in range(5000):
                        n += 1
                    steps.append(k)
            return "end"

        t, out = in_thread(body, mode)
        t.start()
        assert out["ready"].wait(10)
        time.sleep(0.03)
        t.stop()
        threading.Thread.join(t, 10)
        assert not t.is_alive()
        assert steps[1:] == [0, 1, 2], (kind, steps, out)
        assert out.get("value") == "end" or isinstance(out.get("exc"), stopper.StopRequested)


# ---------------------------------------------------------------- shields
def test_shield_holds_an_async_stop_until_its_exit():
    events = []

    def body(s):
        try:
            with stopper.shield():
                events.append("in")
                spin(0.3)  # the stop arrives here
                events.append("shield body done")
        except stopper.StopRequested:
            events.append("raised at exit")
            raise

    t, out = in_thread(body, "async")
    t.start()
    assert out["ready"].wait(10)
    time.sleep(0.05)
    t.stop()
    threading.Thread.join(t, 10)
    assert events == ["in", "shield body done", "raised at exit"]


def test_shield_exit_raises_nothing_in_checkpoint_mode_or_when_already_delivered():
    s = stopper.Stopper()
    with s.interruptible("checkpoint"):
        with stopper.shield():
            s.stop()
        with pytest.raises(stopper.StopRequested):
            stopper.checkpoint()

    def body(s):
        try:
            s.stop()
            spin(1)
        except stopper.StopRequested:
            pass
        with stopper.shield():  # the stop was delivered already
            pass
        return "ok"

    t, out = in_thread(body, "async")
    t.start()
    threading.Thread.join(t, 10)
    assert out.get("value") == "ok"


def test_async_exception_never_lands_inside_a_shield_race():
    """Stops at random moments while a thread enters and leaves shields in a loop: the
    exception is raised outside, or at a shield's exit, never inside a shield block."""
    bad = []
    for i in range(150):
        inside = [False]

        def body(s):
            try:
                while True:
                    with stopper.shield():
                        inside[0] = True
                        x = 0
                        for _ in range(50):
                            x += 1
                        inside[0] = False
            except stopper.StopRequested:
                if inside[0]:
                    bad.append(i)
                raise

        t, out = in_thread(body, "async")
        t.start()
        time.sleep(0.0002 * (i % 10))
        t.stop()
        threading.Thread.join(t, 10)
        assert not t.is_alive()
    assert bad == []


def test_bookkeeping_is_never_interrupted_race():
    """Async stops at random moments while a thread enters/leaves scopes and registers and
    cancels callbacks: afterwards nothing is left entered or registered."""
    from stopper import _lifecycle

    before = len(_lifecycle.callbacks)
    for i in range(150):
        inner = stopper.Stopper()

        def body(s):
            while True:
                with inner:
                    h = inner.on_stop(lambda r: None)
                    h.cancel()
                with inner.interruptible("checkpoint"):
                    pass
                with stopper.timeout(None):
                    pass

        t, out = in_thread(body, "async")
        t.start()
        time.sleep(0.0003 * (i % 10))
        t.stop()
        threading.Thread.join(t, 10)
        assert not t.is_alive()
        assert not out["ready"].is_set() or isinstance(out.get("exc"), stopper.StopRequested), out  # not ready: stopped before run()
        assert inner.join(2) is True  # no worker left inside (every native enter was exited)
    end = time.monotonic() + 5  # a re-delivery armed for a millisecond later may be pending
    while len(_lifecycle.callbacks) != before and time.monotonic() < end:
        time.sleep(0.01)
    assert len(_lifecycle.callbacks) == before


def test_stop_of_own_scope_inside_a_shield_is_raised_at_its_exit():
    def body(s):
        with stopper.shield():
            s.stop()
            spin(0.02)
            mark = "survived"
        return mark

    t, out = in_thread(body, "async")
    t.start()
    threading.Thread.join(t, 10)
    assert "value" not in out and type(out["exc"]) is stopper.StopRequested


# ---------------------------------------------------------------- interpreter exit
@pytest.mark.parametrize("mode", ["checkpoint", "async"])
def test_stopped_non_daemon_thread_never_hangs_exit(mode):
    code = f"""
        import time, stopper
        def run():
            while True:
                stopper.sleep(3600)
        t = stopper.StoppableThread(target=run, interrupt={mode!r})  # not a daemon
        t.start()
        time.sleep(0.05)
        t.stop()
        print("bye")
    """
    t0 = time.monotonic()
    rc, out, err = run_python(code, timeout=20)
    assert rc == 0, err
    assert out.strip() == "bye"
    assert time.monotonic() - t0 < 15


# ---------------------------------------------------------------- CPython 3.13's bug
BUSY_LOOP_WITH_CLEANUP = """
    import stopper, threading, time, warnings
    warnings.simplefilter("ignore")
    out = []
    def body(mode):
        s = stopper.Stopper()
        threading.Timer(0.02, s.stop).start()
        try:
            with s.interruptible(mode):
                try:
                    end = time.monotonic() + 2
                    while time.monotonic() < end:   # a C call in every step
                        if mode == "checkpoint":
                            stopper.checkpoint()
                finally:
                    out.append("finally")
        except stopper.StopRequested:
            out.append("caught")
        out.append(stopper.current() is None)
    body(MODE)
    print(out)
"""


@pytest.mark.parametrize("mode", MODES)
def test_cleanup_in_the_interrupted_frame_runs(mode):
    """The interrupted frame's finally and with-exits run.  On CPython 3.13 (cpython#139622) an
    async exception raised after a C call returns skips them: async mode is documented as broken
    there; checkpoint mode is the way around it (this test passes for it on every version)."""
    if mode == "async" and _delivery.ASYNC_EXCEPTIONS_SKIP_HANDLERS:
        pytest.skip("CPython 3.13 async-exception bug (cpython#139622): use checkpoint mode")
    rc, out, err = run_python(BUSY_LOOP_WITH_CLEANUP.replace("MODE", repr(mode)))
    assert rc == 0, err
    assert out.strip() == "['finally', 'caught', True]"


def test_async_mode_warns_on_313():
    rc, out, err = run_python(
        """
        import warnings, stopper
        from stopper import _delivery
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            with stopper.Stopper().interruptible("async"):
                pass
            with stopper.Stopper().interruptible("checkpoint"):
                pass
        print(_delivery.ASYNC_EXCEPTIONS_SKIP_HANDLERS, [str(x.message)[:40] for x in w])
        """
    )
    assert rc == 0, err
    buggy, msgs = out.split(" ", 1)
    if buggy == "True":
        assert msgs.strip().startswith("['stopper: on Python 3.13")
    else:
        assert msgs.strip() == "[]"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("call", sorted(CALLS))
def test_main_thread_stopped_before_and_never(mode, call):
    s = stopper.Stopper()
    with s.interruptible(mode):
        if call != "checkpoint":
            # never stopped: a short call returns normally
            short = {"sleep": lambda: stopper.sleep(0.001), "wait": lambda: stopper.Stopper().wait(0.001),
                     "wait_any": lambda: stopper.wait_any([stopper.Stopper()], 0.001),
                     "channel_get": lambda: stopper.Channel().get(timeout=0.001)}[call]
            try:
                short()
            except Exception:  # noqa: BLE001 - queue.Empty from the channel
                pass
        else:
            stopper.checkpoint()
    s = stopper.Stopper()
    t0 = time.monotonic()
    where = []
    with pytest.raises(stopper.StopRequested):
        with s.interruptible(mode):
            try:
                with stopper.shield():
                    s.stop()
            except stopper.StopRequested:
                where.append("shield exit")  # async mode: the held-back stop
            where.append("call")
            CALLS[call]()  # stopped before the call: raises at once
    assert time.monotonic() - t0 < 1.0
    assert where == (["call"] if mode == "checkpoint" else ["shield exit", "call"])


@pytest.mark.parametrize("mode", MODES)
def test_sleep_inside_a_scope_takes_what_time_sleep_takes(mode):
    from decimal import Decimal
    from fractions import Fraction

    def errors(fn, arg):
        try:
            fn(arg)
        except Exception as e:  # noqa: BLE001
            return type(e)
        return None

    s = stopper.Stopper()
    with s.interruptible(mode):
        for arg in (0, 0.0, False, Decimal("0.001"), Fraction(1, 1000), -1, -0.5, float("nan"), "1", b"1", None, [], 1j):
            assert errors(stopper.sleep, arg) is errors(time.sleep, arg), arg
