"""stopper.sync: every primitive's blocking call is a checkpoint inside an interruptible scope
(each mode; stopped before the call, while blocked, or never) and is threading/queue itself
outside one; the races of a stop with a release/notify/put lose nothing."""

import threading
import time

import pytest

import stopper
import stopper.sync as sync
from stopper import StopRequested

MODES = ["checkpoint", "async"]
BOUND = 5.0  # generous: the machine is shared; the speed goal lives in the bench


def _until(pred, what, bound=BOUND):
    end = time.monotonic() + bound
    while not pred():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.001)


# Each case builds a primitive that blocks its caller and returns
#   block():   the blocking call made by the thread under test
#   unblock(): what lets it complete (called from the test's thread)
#   expect:    block()'s value once unblocked (ANY: not checked)
#   after():   run once a stopped call has left: asserts the primitive is intact and that the
#              stopped call took nothing
ANY = object()


def case_lock():
    lock = sync.Lock()
    lock.acquire()

    def after():
        assert lock.locked()  # still the test's: the stopped waiter took nothing
        lock.release()
        assert lock.acquire(timeout=BOUND)
        lock.release()

    return dict(block=lock.acquire, unblock=lock.release, expect=True, after=after)


def case_rlock():
    lock = sync.RLock()
    lock.acquire()

    def after():
        assert lock._is_owned()
        lock.release()
        assert lock.acquire(timeout=BOUND)
        lock.release()

    return dict(block=lock.acquire, unblock=lock.release, expect=True, after=after)


def case_condition():
    cond = sync.Condition()
    state = {"owned_after_stop": None}

    def block():
        with cond:
            try:
                return cond.wait()
            except StopRequested:
                state["owned_after_stop"] = cond._is_owned()
                raise

    def unblock():
        _until(lambda: len(cond._waiters) > 0, "a waiter")
        with cond:
            cond.notify()

    def after():
        assert state["owned_after_stop"] is True  # wait() re-acquired before raising
        assert len(cond._waiters) == 0
        assert cond.acquire(timeout=BOUND)  # and `with cond:` released it
        cond.release()

    return dict(block=block, unblock=unblock, expect=True, after=after)


def case_semaphore():
    sem = sync.Semaphore(0)

    def after():
        sem.release()
        assert sem.acquire(timeout=BOUND)
        assert not sem.acquire(False)

    return dict(block=sem.acquire, unblock=sem.release, expect=True, after=after)


def case_bounded_semaphore():
    sem = sync.BoundedSemaphore(1)
    sem.acquire()

    def after():
        sem.release()
        with pytest.raises(ValueError):
            sem.release()

    return dict(block=sem.acquire, unblock=sem.release, expect=True, after=after)


def case_event():
    ev = sync.Event()

    def after():
        ev.set()
        assert ev.wait(BOUND)

    return dict(block=ev.wait, unblock=ev.set, expect=True, after=after)


def case_barrier():
    b = sync.Barrier(2)

    def after():
        assert b.broken  # a party that left broke it, as a timeout does
        with pytest.raises(sync.BrokenBarrierError):
            b.wait()

    return dict(block=b.wait, unblock=lambda: b.wait(BOUND), expect=ANY, after=after)


def _get_case(q):
    def after():
        q.put("y")
        assert q.get(timeout=BOUND) == "y"  # nothing was taken by the stopped get
        assert q.empty()

    return dict(block=q.get, unblock=lambda: q.put("x"), expect="x", after=after)


def case_queue():
    return _get_case(sync.Queue())


def case_lifo_queue():
    return _get_case(sync.LifoQueue())


def case_priority_queue():
    return _get_case(sync.PriorityQueue())


def case_simple_queue():
    return _get_case(sync.SimpleQueue())


def case_full_queue():
    q = sync.Queue(1)
    q.put(0)

    def after():
        assert q.get_nowait() == 0
        assert q.empty()  # the stopped put put nothing

    return dict(block=lambda: q.put(1), unblock=q.get, expect=None, after=after)


def case_queue_join():
    q = sync.Queue()
    q.put(0)

    def unblock():
        q.get()
        q.task_done()

    def after():
        assert q.unfinished_tasks == 1

    return dict(block=q.join, unblock=unblock, expect=None, after=after)


def case_sleep():
    return dict(block=lambda: sync.sleep(3600), unblock=None, expect=None, after=lambda: None)


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}


def _run(mode, c, s, when):
    """Runs c's blocking call in a thread inside s.interruptible(mode); returns (outcome, value)."""
    out = {}
    entered = threading.Event()

    def body():
        try:
            with s.interruptible(mode):
                entered.set()
                out["called"] = True
                out["value"] = c["block"]()
                out["outcome"] = "returned"
        except StopRequested:
            out["outcome"] = "stopped"
        except BaseException as e:  # pragma: no cover - reported by the assertion below
            out["outcome"] = repr(e)
        finally:
            entered.set()

    t = threading.Thread(target=body, daemon=True)
    if when == "before":
        s.stop()
    t.start()
    assert entered.wait(BOUND)
    if when == "while":
        time.sleep(0.05)
        s.stop()
    elif when == "never":
        if c["unblock"] is None:
            c["block"] = lambda: None
        else:
            time.sleep(0.05)
            c["unblock"]()
    t.join(BOUND)
    assert not t.is_alive(), "the call did not end"
    return out.get("outcome"), out.get("value"), out.get("called", False)


@pytest.mark.parametrize("when", ["before", "while", "never"])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("mode", MODES)
def test_primitive_in_scope(mode, case, when):
    c = CASES[case]()
    s = stopper.Stopper()
    if when == "never" and c["unblock"] is None:
        c["block"] = lambda: sync.sleep(0.01)
        c["unblock"] = lambda: None
    outcome, value, called = _run(mode, c, s, when)
    if when == "never":
        assert outcome == "returned"
        if c["expect"] is not ANY:
            assert value == c["expect"]
    else:
        assert outcome == "stopped"
        # "async" mode may raise on entering an already stopped scope, before the call
        assert called or (mode == "async" and when == "before")
        if called:
            c["after"]()


@pytest.mark.parametrize("case", sorted(c for c in CASES if c != "sleep"))
def test_primitive_outside_scope_is_the_original(case):
    """A thread in no scope: a stop of some stopper changes nothing; the call waits until it
    is unblocked, like threading's."""
    c = CASES[case]()
    other = stopper.Stopper()
    out = {}

    def body():
        out["value"] = c["block"]()

    t = threading.Thread(target=body, daemon=True)
    t.start()
    time.sleep(0.05)
    other.stop()
    time.sleep(0.05)
    assert t.is_alive()
    c["unblock"]()
    t.join(BOUND)
    assert not t.is_alive()
    if c["expect"] is not ANY:
        assert out["value"] == c["expect"]


def test_a_stopped_scope_raises_at_every_blocking_call():
    q = sync.Queue()
    s = stopper.Stopper()
    s.stop()
    raised = 0
    with s.interruptible("checkpoint"):
        for _ in range(3):
            try:
                q.get()
            except StopRequested:
                raised += 1
    assert raised == 3


def test_a_call_that_need_not_wait_completes_in_a_stopped_scope():
    q = sync.Queue()
    q.put(1)
    lock = sync.Lock()
    ev = sync.Event()
    ev.set()
    s = stopper.Stopper()
    s.stop()
    with s.interruptible("checkpoint"):
        assert q.get() == 1
        assert lock.acquire()
        assert ev.wait()
    lock.release()


def test_timeouts_still_time_out_inside_a_scope():
    s = stopper.Stopper()
    with s.interruptible("checkpoint"):
        lock = sync.Lock()
        lock.acquire()
        t0 = time.monotonic()
        assert lock.acquire(timeout=0.05) is False
        assert time.monotonic() - t0 >= 0.04
        assert sync.Event().wait(0.05) is False
        with pytest.raises(sync.Empty):
            sync.Queue().get(timeout=0.05)
        assert sync.Semaphore(0).acquire(timeout=0.05) is False


# ---------------------------------------------------------------- races
def _waiter(target, s, out, key):
    def body():
        try:
            with s.interruptible("checkpoint"):
                out[key] = ("returned", target())
        except StopRequested:
            out[key] = ("stopped", None)

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t


def test_race_stop_vs_release_never_leaks_the_lock():
    """The rule: acquire() returning True means held, StopRequested means not held.  A stop
    and a release at the same moment, 300 times: the lock is never left held by the stopped
    thread, and a second waiter outside the race always gets it."""
    outcomes = set()
    for i in range(300):
        lock = sync.Lock()
        lock.acquire()
        s1, s2 = stopper.Stopper(), stopper.Stopper()
        out = {}

        def take_and_give():
            got = lock.acquire()
            lock.release()
            return got

        t1 = _waiter(take_and_give, s1, out, 1)
        t2 = _waiter(take_and_give, s2, out, 2)
        _until(lambda: len(lock._waiters) >= 2, "two waiters")
        if i % 2:
            s1.stop()
            lock.release()
        else:
            lock.release()
            s1.stop()
        t1.join(BOUND)
        t2.join(BOUND)  # a stop never swallows the release meant for t2
        assert not t1.is_alive() and not t2.is_alive(), f"round {i}: a waiter was never woken"
        assert out[2] == ("returned", True)
        outcomes.add(out[1][0])
        assert lock.acquire(False), f"round {i}: the lock leaked"
    assert "stopped" in outcomes  # the race went both ways at least sometimes
    assert len(outcomes) >= 1


@pytest.mark.parametrize("kind", ["queue", "simple_queue", "semaphore", "condition"])
def test_race_stop_vs_wakeup_never_loses_the_wakeup(kind):
    """Two waiters; one is stopped at the moment the one wake-up arrives.  If the stopped one
    did not take it, the other one must get it: 200 rounds."""
    for i in range(200):
        if kind == "queue":
            q = sync.Queue()
            waiters = lambda: len(q.not_empty._waiters)  # noqa: E731
            take, give = q.get, lambda: q.put("x")
        elif kind == "simple_queue":
            q = sync.SimpleQueue()
            waiters = lambda: len(q._count._cond._waiters)  # noqa: E731
            take, give = q.get, lambda: q.put("x")
        elif kind == "semaphore":
            sem = sync.Semaphore(0)
            waiters = lambda: len(sem._cond._waiters)  # noqa: E731
            take, give = sem.acquire, sem.release
        else:
            cond = sync.Condition()
            tokens = [0]

            def take():
                with cond:
                    while not tokens[0]:
                        cond.wait()
                    tokens[0] -= 1
                    return True

            def give():
                with cond:
                    tokens[0] += 1
                    cond.notify()

            waiters = lambda: len(cond._waiters)  # noqa: E731
        s1, s2 = stopper.Stopper(), stopper.Stopper()
        out = {}
        t1 = _waiter(take, s1, out, 1)
        t2 = _waiter(take, s2, out, 2)
        _until(lambda: waiters() >= 2, "two waiters")
        if i % 2:
            s1.stop()
            give()
        else:
            give()
            s1.stop()
        t1.join(BOUND)
        if out[1][0] == "returned":
            give()  # t1 took the one wake-up fairly: t2 needs its own
        t2.join(BOUND)
        assert not t2.is_alive(), f"round {i}: the wake-up was lost ({out.get(1)})"
        assert out[2][0] == "returned"


def test_stop_vs_set_of_event_many_waiters():
    """Event.set() wakes every waiter; stopping some of them at the same moment loses no one."""
    for _ in range(50):
        ev = sync.Event()
        stops = [stopper.Stopper() for _ in range(4)]
        out = {}
        threads = [_waiter(ev.wait, s, out, k) for k, s in enumerate(stops)]
        _until(lambda: len(ev._cond._waiters) == 4, "four waiters")
        stops[0].stop()
        stops[1].stop()
        ev.set()
        for t in threads:
            t.join(BOUND)
            assert not t.is_alive()
        assert out[2] == ("returned", True) and out[3] == ("returned", True)


def test_rlock_reentry_and_ownership_inside_scope():
    lock = sync.RLock()
    s = stopper.Stopper()
    with s.interruptible("checkpoint"):
        with lock:
            with lock:
                assert lock._recursion_count() == 2
    assert not lock.locked()
    with pytest.raises(RuntimeError):
        lock.release()


def test_condition_wait_for_and_notify_n_inside_scope():
    cond = sync.Condition(sync.Lock())
    box = []
    s = stopper.Stopper()
    results = []

    def waiter():
        with s.interruptible("checkpoint"):
            with cond:
                results.append(cond.wait_for(lambda: box, timeout=BOUND))

    threads = [threading.Thread(target=waiter) for _ in range(3)]
    for t in threads:
        t.start()
    _until(lambda: len(cond._waiters) == 3, "three waiters")
    with cond:
        box.append(1)
        cond.notify(2)
    _until(lambda: len(results) == 2, "two woken")
    with cond:
        cond.notify()
    for t in threads:
        t.join(BOUND)
    assert results == [[1], [1], [1]]


def test_semaphore_release_n():
    sem = sync.Semaphore(0)
    s = stopper.Stopper()
    got = []

    def w():
        with s.interruptible("checkpoint"):
            got.append(sem.acquire(timeout=BOUND))

    threads = [threading.Thread(target=w) for _ in range(3)]
    for t in threads:
        t.start()
    sem.release(3)
    for t in threads:
        t.join(BOUND)
    assert got == [True, True, True]


@pytest.mark.skipif(not hasattr(stopper, "sleep"), reason="stopper.sleep comes with the delivery machinery")
def test_sleep_is_stopper_sleep():
    assert sync.sleep is stopper.sleep


def test_uncontended_lock_stays_cheap():
    """Not the speed goal (that is `make bench`): a gross regression guard only."""
    import timeit

    ours = sync.Lock()
    theirs = threading.Lock()

    def cycle(lock):
        a, r = lock.acquire, lock.release
        return min(timeit.repeat(lambda: (a(), r()), number=20000, repeat=5))

    assert cycle(ours) < 20 * cycle(theirs)


def test_acquired_and_stopped_at_once_gives_the_lock_back(monkeypatch):
    """The rule's hard case, made deterministic: the waiter takes the lock in the very instant
    its scope stops (the stop lands between its wake-up and its successful retry).  acquire()
    must raise StopRequested and leave the lock free, not raise while holding it."""
    from stopper import _sync_lock

    lock = sync.Lock()
    lock.acquire()
    s = stopper.Stopper()
    made = []
    real_init = _sync_lock._Waiter.__init__

    def init(self):
        real_init(self)
        made.append(self)
        if len(made) == 2:  # the registration after the release woke it: stop now
            s.stop()

    monkeypatch.setattr(_sync_lock._Waiter, "__init__", init)
    out = {}

    def body():
        with s.interruptible("checkpoint"):
            try:
                out["r"] = lock.acquire()
            except StopRequested:
                out["r"] = "stopped"

    t = threading.Thread(target=body)
    t.start()
    _until(lambda: len(lock._waiters) == 1, "the waiter")
    lock.release()
    t.join(BOUND)
    assert not t.is_alive()
    assert len(made) == 2  # it did wake, register again and retry
    assert out["r"] == "stopped"
    assert not lock.locked()  # given back: no leak
