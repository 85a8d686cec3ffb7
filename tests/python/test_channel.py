"""Channel: identity, order, bounds, time-outs, close, stop, many threads."""

import queue
import threading
import time

import pytest

import stopper
from conftest import later


def test_objects_travel_intact():
    ch = stopper.Channel()
    objs = [object(), [1, 2], {"k": "v"}, None, 3.5, "s", ch]
    for o in objs:
        ch.put(o)
    assert len(ch) == len(objs)
    for o in objs:
        assert ch.get() is o
    assert len(ch) == 0


def test_empty_and_full_timeouts():
    ch = stopper.Channel(capacity=2)
    assert ch.capacity == 2
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        ch.get(timeout=0.05)
    assert time.monotonic() - t0 >= 0.04
    with pytest.raises(queue.Empty):
        ch.get_nowait()
    ch.put(1)
    ch.put_nowait(2)
    with pytest.raises(queue.Full):
        ch.put(3, timeout=0.02)
    with pytest.raises(queue.Full):
        ch.put_nowait(3)
    assert [ch.get(), ch.get()] == [1, 2]


def test_blocking_get_wakes_on_put():
    ch = stopper.Channel()
    later(0.05, ch.put, "late")
    t0 = time.monotonic()
    assert ch.get(timeout=10) == "late"
    assert time.monotonic() - t0 < 1


def test_stop_ends_get_and_put_at_once():
    s = stopper.Stopper()
    ch = stopper.Channel(1)
    later(0.05, s.stop, 6)
    t0 = time.monotonic()
    with pytest.raises(stopper.StopRequested) as ei:
        ch.get(stopper=s)
    assert time.monotonic() - t0 < 1
    assert ei.value.reason == 6
    ch.put("x")
    with pytest.raises(stopper.StopRequested):
        ch.put("y", stopper=s, timeout=10)  # stop checked first
    with pytest.raises(stopper.StopRequested):
        ch.get(stopper=s)
    assert ch.get() == "x"  # the failed put left nothing behind


def test_close_semantics():
    ch = stopper.Channel()
    ch.put(1)
    ch.put(2)
    ch.close()
    assert ch.closed
    with pytest.raises(stopper.ChannelClosed):
        ch.put(3)
    assert list(ch) == [1, 2]  # drained after close
    with pytest.raises(stopper.ChannelClosed):
        ch.get(timeout=1)


def test_close_wakes_blocked_getter():
    ch = stopper.Channel()
    later(0.05, ch.close)
    with pytest.raises(stopper.ChannelClosed):
        ch.get(timeout=10)


def test_several_producers_and_consumers_exactly_once():
    ch = stopper.Channel(capacity=16)
    n_prod, per = 6, 2000
    got = []
    lock = threading.Lock()
    items = [[(p, i) for i in range(per)] for p in range(n_prod)]  # objects identities to check

    def producer(p):
        for o in items[p]:
            ch.put(o)

    def consumer():
        local = []
        for o in ch:
            local.append(o)
        with lock:
            got.extend(local)

    cons = [threading.Thread(target=consumer) for _ in range(3)]
    prods = [threading.Thread(target=producer, args=(p,)) for p in range(n_prod)]
    for t in cons + prods:
        t.start()
    for t in prods:
        t.join(30)
    ch.close()
    for t in cons:
        t.join(30)
    assert len(got) == n_prod * per
    ids = {id(o) for o in got}
    assert ids == {id(o) for lst in items for o in lst}
    # per-producer FIFO order is kept within each consumer's view
    assert len(ch._items) == 0


def test_registry_does_not_grow_on_failures():
    ch = stopper.Channel(1)
    s = stopper.Stopper()
    s.stop()
    ch.put(0)
    for _ in range(100):
        with pytest.raises(queue.Full):
            ch.put(object(), timeout=0)
        with pytest.raises(stopper.StopRequested):
            ch.put(object(), stopper=s)
    assert len(ch._items) == 1


def test_bad_input():
    with pytest.raises(ValueError):
        stopper.Channel(-1)
    with pytest.raises(TypeError):
        stopper.Channel("3")
    with pytest.raises(TypeError):
        stopper.Channel(1.5)
    ch = stopper.Channel()
    with pytest.raises(TypeError):
        ch.get(stopper=1.0)
    with pytest.raises(ValueError):
        ch.get(timeout=-0.5)
    with pytest.raises(TypeError):
        ch.put(1, timeout="1")
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(ch)
