"""Stopper: every method, on one thread and across threads."""

import gc
import os
import select
import selectors
import socket
import threading
import time

import pytest

import stopper
from conftest import later


def test_new_stopper_is_running():
    s = stopper.Stopper()
    assert s.is_set() is False
    assert s.stopped() is False
    assert s.reason == 0
    assert s.remaining() is None
    assert "running" in repr(s)


def test_stop_once_and_reason():
    s = stopper.Stopper()
    assert s.stop() is True
    assert s.is_set() is True
    assert s.reason == stopper.REASON_REQUESTED
    assert s.stop(42) is False  # already stopped: the first reason stays
    assert s.reason == stopper.REASON_REQUESTED
    assert "stopped" in repr(s)


@pytest.mark.parametrize("reason", [1, 5, -7, 2**31 - 1, -(2**31)])
def test_reason_recorded_as_given(reason):
    s = stopper.Stopper()
    s.stop(reason)
    assert s.reason == reason


def test_wait_times_out_then_returns_false():
    s = stopper.Stopper()
    t0 = time.monotonic()
    assert s.wait(0.05) is False
    assert time.monotonic() - t0 >= 0.04
    assert s.wait(0) is False


def test_wait_returns_true_at_once_when_stopped():
    s = stopper.Stopper()
    s.stop()
    t0 = time.monotonic()
    assert s.wait(5) is True
    assert s.wait() is True
    assert time.monotonic() - t0 < 1


def test_wait_wakes_on_stop_from_other_thread_and_releases_gil():
    s = stopper.Stopper()
    ticks = []
    counter = threading.Thread(target=lambda: [ticks.append(1) or time.sleep(0.001) for _ in range(20)])
    counter.start()
    later(0.05, s.stop)
    t0 = time.monotonic()
    assert s.wait(10) is True
    dt = time.monotonic() - t0
    counter.join()
    assert 0.03 < dt < 1.0
    assert len(ticks) == 20  # another Python thread ran while we waited


def test_many_waiters_all_wake():
    s = stopper.Stopper()
    results = []
    threads = [threading.Thread(target=lambda: results.append(s.wait(10))) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    s.stop()
    for t in threads:
        t.join(5)
    assert results == [True] * 8


def test_child_follows_parent_not_the_reverse():
    p = stopper.Stopper()
    c = p.child()
    g = c.child()
    c2 = p.child()
    c2.stop(9)
    assert not p.is_set()
    p.stop(33)
    assert c.is_set() and g.is_set()
    assert c.reason == 33 and g.reason == 33
    assert c2.reason == 9
    assert p.child().is_set()  # born stopped


def test_linked_stopper():
    a, b = stopper.Stopper(), stopper.Stopper()
    l = stopper.Stopper.linked(a, b)
    assert not l.is_set()
    b.stop(12)
    assert l.is_set() and l.reason == 12 and not a.is_set()
    assert not stopper.Stopper.linked().is_set()
    with pytest.raises(TypeError):
        stopper.Stopper.linked(a, 3)


def test_stop_after_and_remaining():
    s = stopper.Stopper()
    assert s.stop_after(0.08) is True
    r = s.remaining()
    assert r is not None and 0 < r <= 0.08
    t0 = time.monotonic()
    assert s.wait(5) is True
    assert 0.05 < time.monotonic() - t0 < 2
    assert s.reason == stopper.REASON_DEADLINE
    assert s.remaining() == 0.0
    assert s.stop_after(1) is False  # already stopped


def test_stop_after_rearm_disarm_and_custom_reason():
    s = stopper.Stopper()
    s.stop_after(0.03)
    s.stop_after(10)  # re-arm: replaces the first
    assert not s.wait(0.1)
    assert s.stop_after(None) is True  # disarm
    assert s.remaining() is None
    s.stop_after(0.01, reason=77)
    assert s.wait(5) and s.reason == 77


def test_remaining_sees_ancestor_deadline():
    p = stopper.Stopper()
    c = p.child()
    p.stop_after(30)
    r = c.remaining()
    assert r is not None and 29 < r <= 30
    p.stop_after(None)


def test_deadline_keeps_dropped_stopper_and_its_callbacks_alive():
    got = []
    ev = threading.Event()
    s = stopper.Stopper()
    s.on_stop(lambda r: (got.append(r), ev.set()))
    s.stop_after(0.03)
    del s
    gc.collect()
    assert ev.wait(5)
    assert got == [stopper.REASON_DEADLINE]


def test_on_stop_runs_in_order_on_stopping_thread():
    s = stopper.Stopper()
    got = []
    s.on_stop(lambda r: got.append(("a", r, threading.get_ident())))
    s.on_stop(lambda r: got.append(("b", r, threading.get_ident())))
    t = threading.Thread(target=s.stop, args=(5,))
    t.start()
    t.join()
    assert [g[:2] for g in got] == [("a", 5), ("b", 5)]
    assert {g[2] for g in got} == {t.ident}


def test_on_stop_when_already_stopped_runs_at_once():
    s = stopper.Stopper()
    s.stop(3)
    got = []
    h = s.on_stop(got.append)
    assert got == [3]
    assert h.cancel() is False
    assert not h.registered


def test_on_stop_cancel():
    s = stopper.Stopper()
    got = []
    h = s.on_stop(got.append)
    h2 = s.on_stop(got.append)
    assert h.registered
    assert h.cancel() is True
    assert h.cancel() is False
    s.stop()
    assert got == [1]
    assert h2.cancel() is False


def test_on_stop_exception_is_reported_and_others_run(hook_errors):
    s = stopper.Stopper()
    got = []
    s.on_stop(lambda r: got.append(1))
    s.on_stop(lambda r: 1 / 0)
    s.on_stop(lambda r: got.append(3))
    s.stop()
    assert got == [1, 3]
    assert len(hook_errors) == 1 and isinstance(hook_errors[0], ZeroDivisionError)


def test_on_stop_from_deadline_runs_on_service_thread():
    s = stopper.Stopper()
    where = []
    ev = threading.Event()
    s.on_stop(lambda r: (where.append(threading.get_ident()), ev.set()))
    s.stop_after(0.01)
    assert ev.wait(5)
    assert where[0] != threading.get_ident()


def test_callback_may_stop_other_stoppers_and_cancel_itself():
    a, b = stopper.Stopper(), stopper.Stopper()
    handles = []
    handles.append(a.on_stop(lambda r: (b.stop(r + 1), handles[0].cancel())))
    a.stop(10)
    assert b.is_set() and b.reason == 11


def test_dropped_stopper_unregisters_its_callbacks():
    from stopper import _lifecycle

    before = len(_lifecycle.callbacks)
    for _ in range(200):
        s = stopper.Stopper()
        s.on_stop(print)
        del s
    gc.collect()
    assert len(_lifecycle.callbacks) == before


def test_fileno_select_and_selectors():
    s = stopper.Stopper()
    fd = s.fileno()
    assert fd >= 0 and s.fileno() == fd
    assert select.select([fd], [], [], 0) == ([], [], [])
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ, "stop")
    a, b = socket.socketpair()
    sel.register(a, selectors.EVENT_READ, "sock")
    b.send(b"x")
    assert [k.data for k, _ in sel.select(1)] == ["sock"]
    a.recv(1)
    later(0.05, s.stop)
    t0 = time.monotonic()
    assert [k.data for k, _ in sel.select(5)] == ["stop"]
    assert time.monotonic() - t0 < 1
    assert [k.data for k, _ in sel.select(0)] == ["stop"]  # readable for good
    sel.close()
    a.close()
    b.close()


def test_wait_readable_writable():
    s = stopper.Stopper()
    a, b = socket.socketpair()
    try:
        assert s.wait_readable(a, 0.02) is False
        assert s.wait_writable(a, 1) is True
        b.send(b"hi")
        assert s.wait_readable(a.fileno(), 1) is True
        assert a.recv(2) == b"hi"
        later(0.05, s.stop, 8)
        t0 = time.monotonic()
        with pytest.raises(stopper.StopRequested) as ei:
            s.wait_readable(a, 10)
        assert time.monotonic() - t0 < 1
        assert ei.value.reason == 8
        b.send(b"x")  # stop is checked first: a ready socket does not hide it
        with pytest.raises(stopper.StopRequested):
            s.wait_readable(a, 1)
    finally:
        a.close()
        b.close()


def test_join_without_workers_stops_and_returns():
    s = stopper.Stopper()
    assert s.join(1) is True
    assert s.is_set()


def test_join_waits_for_workers():
    s = stopper.Stopper()
    inside = threading.Event()
    left = []

    def worker():
        with s:
            inside.set()
            s.wait()
            time.sleep(0.05)
            left.append(time.monotonic())

    t = threading.Thread(target=worker)
    t.start()
    assert inside.wait(5)
    assert s.join(5) is True
    assert left and time.monotonic() >= left[0]
    t.join()


def test_join_times_out_and_refuses_self_join():
    s = stopper.Stopper()
    inside = threading.Event()
    release = threading.Event()

    def worker():
        with s:
            inside.set()
            release.wait(5)

    t = threading.Thread(target=worker)
    t.start()
    inside.wait(5)
    assert s.join(0.05) is False
    release.set()
    assert s.join(5) is True
    t.join()
    with stopper.Stopper() as w:
        with pytest.raises(RuntimeError):
            w.join(0.1)


def test_with_enters_and_current():
    assert stopper.current() is None
    a = stopper.Stopper()
    with a as x:
        assert x is a
        assert stopper.current() is a
        b = stopper.Stopper()
        with b:
            assert stopper.current() is b
            with a:  # the same stopper twice, nested
                assert stopper.current() is a
            assert stopper.current() is b
        assert stopper.current() is a
    assert stopper.current() is None


def test_with_stopped_stopper_still_enters():
    s = stopper.Stopper()
    s.stop()
    with s:
        assert stopper.current() is s
    assert stopper.current() is None


def test_current_is_per_thread():
    s = stopper.Stopper()
    seen = []
    with s:
        t = threading.Thread(target=lambda: seen.append(stopper.current()))
        t.start()
        t.join()
    assert seen == [None]


def test_exit_without_enter_is_an_error():
    s = stopper.Stopper()
    with pytest.raises(RuntimeError):
        s.__exit__(None, None, None)


def test_wait_any():
    a, b, c = stopper.Stopper(), stopper.Stopper(), stopper.Stopper()
    assert stopper.wait_any([a, b, c], 0.02) is None
    later(0.05, b.stop)
    t0 = time.monotonic()
    assert stopper.wait_any([a, b, c], 10) == 1
    assert time.monotonic() - t0 < 1
    assert stopper.wait_any((x for x in [a, b]), 0) == 1
    t0 = time.monotonic()
    assert stopper.wait_any([], 0.03) is None
    assert time.monotonic() - t0 >= 0.02
    with pytest.raises(ValueError):
        stopper.wait_any([])


def test_is_set_reads_the_flag_without_a_call_and_is_fast():
    s = stopper.Stopper()
    e = threading.Event()

    def per_call(fn, n=200_000):
        best = 1e9
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            best = min(best, (time.perf_counter() - t0) / n)
        return best

    ours, event = per_call(s.is_set), per_call(e.is_set)
    # The speed goal (<= 1.0x) is measured in `make bench`; here only a generous sanity bound
    # that a call into the library per check (about 5x) would fail.
    assert ours < 3 * event, (ours, event)
    s.stop()
    assert s.is_set()


def test_stoppers_are_hashable_and_compare_by_identity_of_the_native_object():
    a = stopper.Stopper()
    with a:
        assert stopper.current() == a
    assert a != stopper.Stopper()
    assert len({a, a}) == 1


def test_version_info():
    assert stopper.library_version() == "0.1.0"
    assert stopper.thread_id() == threading.get_ident()
    assert os.path.exists(stopper.library_path())
