"""No leak over 10^5 stoppers (RSS, generous bounds), nor over scopes, callbacks, channels."""

import gc

import stopper
from stopper import _delivery, _lifecycle


def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 // 1024


def grows(fn, rounds=3):
    """RSS growth (KiB) over the last rounds, after a warm-up round."""
    fn()
    gc.collect()
    base = rss_kib()
    for _ in range(rounds):
        fn()
        gc.collect()
    return rss_kib() - base


def test_no_leak_over_1e5_stoppers():
    def make():
        for _ in range(100_000):
            s = stopper.Stopper()
            s.is_set()

    # 10^5 leaked stoppers would be well over 10 MiB (each is a native object + a Python one)
    assert grows(make, rounds=2) < 8 * 1024
    assert len(_lifecycle.live) < 1000


def test_no_leak_children_callbacks_deadlines():
    parent = stopper.Stopper()

    def make():
        for i in range(20_000):
            c = parent.child()
            h = c.on_stop(lambda r: None)
            if i % 2:
                h.cancel()
            c.stop_after(30)
            c.stop_after(None)
            if i % 3 == 0:
                c.stop()

    assert grows(make, rounds=2) < 8 * 1024
    assert len(_lifecycle.callbacks) == 0
    assert len(_lifecycle.armed) == 0


def test_no_leak_scopes_timeouts_channels():
    def make():
        s = stopper.Stopper()
        for _ in range(10_000):
            with s:
                pass
            with stopper.timeout(30):
                pass
            ch = stopper.Channel(4)
            ch.put(object())
            ch.get()

    assert grows(make, rounds=2) < 8 * 1024
    assert len(_lifecycle.callbacks) == 0
    assert not _delivery.state().stack
