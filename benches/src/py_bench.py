"""py_bench: the Python `stopper` package against the recipes it replaces (shared/RECIPES.md).

    python py_bench.py [--smoke]

Runs under the interpreter that has `stopper` installed ($STOPPER_PYTHON). Prints JSON lines in
the format of bench_util.h (kinds: meta, pair, samples, value, note); run.py makes the tables.
When `stopper` cannot be imported, only the standard-library reference rows are measured and a
note says why. Every measurement of the package is guarded: an exception or a thread that does
not finish becomes a note, never a hang (threads are daemons and every join has a time limit).
"""

import ctypes
import gc
import json
import os
import queue
import random
import sys
import threading
import time

SMOKE = "--smoke" in sys.argv
now = time.perf_counter_ns  # CLOCK_MONOTONIC on Linux

try:
    import stopper  # noqa: E402

    IMPORT_ERROR = None
except Exception as e:  # ImportError, or a binding that is still being written
    stopper = None
    IMPORT_ERROR = f"{type(e).__name__}: {e}"


def emit(**rec):
    print(json.dumps(rec), flush=True)


def note(text):
    emit(kind="note", text=text)


def emit_samples(id_, values):
    v = sorted(int(x) for x in values)
    n = len(v)
    if n == 0:
        note(f"{id_}: no samples")
        return

    def q(p):
        return v[min(n - 1, int(p * n))]

    keep = v if n <= 2000 else [v[int(i * (n - 1) / 1999)] for i in range(2000)]
    emit(kind="samples", id=id_, unit="ns", n=n, p50=q(0.5), p90=q(0.9), p99=q(0.99), max=v[-1],
         mean=sum(v) / n, values=keep)


def progress(what):
    print(f"  {what} done", file=sys.stderr, flush=True)


def threads_now():
    return len(os.listdir("/proc/self/task"))


def rss_now():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def start_daemon(target, *args):
    t = threading.Thread(target=target, args=args, daemon=True)
    t.start()
    return t


def check_box(box, missing):
    """Raises what the measured thread raised, or `missing` when it never finished."""
    if "error" in box:
        e = box["error"]
        raise RuntimeError(f"the measured thread raised {type(e).__name__}: {e}") from e
    if "t1" not in box:
        raise RuntimeError(missing)


def wait_flag(box, key, limit=5.0):
    """Spin (sleeping) until box[key] is set, then let the thread get into its blocking call."""
    end = time.monotonic() + limit
    while not box.get(key):
        if time.monotonic() > end:
            raise RuntimeError("the waiter thread never started")
        time.sleep(0.0001)
    time.sleep(0.001)


# ---------------------------------------------------------------- is_set


def bench_is_set():
    rounds = 3 if SMOKE else 15
    n = 2_000 if SMOKE else 300_000
    ev = threading.Event()
    s = stopper.Stopper()
    a_call, b_call = s.is_set, ev.is_set
    if a_call() or b_call():
        raise RuntimeError("a new Stopper or Event reports set")
    rng = range(n)
    va, vb = [], []
    for r in range(rounds + 1):
        t0 = now()
        for _ in rng:
            a_call()
        t1 = now()
        for _ in rng:
            b_call()
        t2 = now()
        if r:  # round 0 warms up
            va.append((t1 - t0) / n)
            vb.append((t2 - t1) / n)
    emit(kind="pair", id="py_is_set", a=va, b=vb)
    s.stop()
    if not s.is_set():
        raise RuntimeError("Stopper.is_set() is False after stop()")
    progress("is_set")


def bench_import():
    """`import stopper` against `import threading` (python -X importtime, cumulative time of
    the top-level module, each in a fresh interpreter; issue 13's goal: <= 15 ms, median of 5)."""
    import subprocess

    def once(module):
        p = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                           capture_output=True, text=True, timeout=60)
        for line in reversed(p.stderr.splitlines()):
            parts = [x.strip() for x in line.split("|")]
            if len(parts) == 3 and parts[2] == module:
                return int(parts[1]) * 1000  # us -> ns
        raise RuntimeError(f"no importtime line for {module}: {p.stderr[-300:]}")

    rounds = 3 if SMOKE else 9
    va, vb = [], []
    for _ in range(rounds):
        va.append(once("stopper"))
        vb.append(once("threading"))
    emit(kind="pair", id="py_import", a=va, b=vb)
    progress("import")


# ---------------------------------------------------------------- wake latency


def one_wake(make, blocked, stop):
    obj = make()
    box = {}

    def waiter():
        box["armed"] = True
        try:
            blocked(obj)
        except BaseException as e:
            box["error"] = e
        box["t1"] = now()

    t = start_daemon(waiter)
    wait_flag(box, "armed")
    t0 = now()
    stop(obj)
    t.join(5)
    check_box(box, "a blocked wait did not return within 5 s of the stop")
    return box["t1"] - t0


def bench_wake(with_stopper):
    n = 5 if SMOKE else 400
    ls, le = [], []
    for _ in range(n):
        if with_stopper:
            ls.append(one_wake(stopper.Stopper, lambda s: s.wait(), lambda s: s.stop()))
        le.append(one_wake(threading.Event, lambda e: e.wait(), lambda e: e.set()))
    if with_stopper:
        emit_samples("py_wake_stopper", ls)
    emit_samples("py_wake_event", le)
    progress("wake latency")


# ---------------------------------------------------------------- across processes


class _RawShared:
    """A shared stopper through the C ABI directly (stopper._native), for when the package has
    no Stopper.shared yet: the same library calls Stopper.shared makes."""

    def __init__(self, name):
        from stopper import _native as n

        self._n, self._name = n, name.encode("ascii")
        self._h = n.stopper_open_shared(self._name)
        if not self._h:
            raise OSError(ctypes.get_errno(), f"stopper_open_shared({name!r}) failed")

    def wait(self):
        return self._n.stopper_wait(self._h, -1) == self._n.STOPPED

    def stop(self, reason=0):
        return self._n.stopper_stop(self._h, reason) == 1

    def close(self):
        if self._h:
            self._n.stopper_release(self._h)
            self._h = None


def _shared_api():
    """(open(name) -> object with wait/stop/close, unlink(name), description)."""
    if hasattr(stopper.Stopper, "shared") and hasattr(stopper, "unlink_shared"):

        class Pkg:
            def __init__(self, name):
                self.s = stopper.Stopper.shared(name)

            def wait(self):
                return self.s.wait()

            def stop(self, reason=0):
                return self.s.stop(reason)

            def close(self):
                self.s = None  # the last reference: released by the package's finalizer

        return Pkg, lambda name: stopper.unlink_shared(name, missing_ok=True), "Stopper.shared"
    from stopper import _native as n

    return _RawShared, lambda name: n.stopper_unlink_shared(name.encode("ascii")), "the C ABI via ctypes"


def _mp_child(conn, ev):
    """The child process: blocks in what the parent names, reports the time it woke
    (perf_counter_ns is CLOCK_MONOTONIC: the same clock in every process)."""
    opener = None
    while True:
        msg = conn.recv()
        if msg[0] == "quit":
            return
        if msg[0] == "event":
            conn.send("armed")
            ok = ev.wait(30)
            conn.send((ok, now()))
        else:
            if opener is None:
                opener = _shared_api()[0]
            s = opener(msg[1])
            conn.send("armed")
            ok = s.wait()
            t1 = now()
            s.close()
            conn.send((ok, t1))


def bench_cross_process(with_stopper):
    """A child process blocked in multiprocessing.Event.wait() (RECIPES 5's shared flag) or in a
    shared Stopper's wait(); this process sets / stops it. Interleaved with the in-process
    wake-up (a thread in Stopper.wait()), one sample at a time."""
    import multiprocessing

    n = 5 if SMOKE else 300
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no fork of a threaded process
    ev = ctx.Event()
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_mp_child, args=(child, ev), daemon=True)
    p.start()
    opener, unlink, how = _shared_api() if with_stopper else (None, None, None)
    if with_stopper and how != "Stopper.shared":
        note(f"cross-process Stopper rows: the package has no Stopper.shared yet, measured through {how}")

    def ask(msg):
        parent.send(msg)
        if not parent.poll(30):
            raise RuntimeError("the child process did not answer within 30 s")
        if parent.recv() != "armed":
            raise RuntimeError("unexpected answer from the child process")
        time.sleep(0.001)  # let it block

    def result(t0):
        if not parent.poll(10):
            raise RuntimeError("the child process did not wake within 10 s of the stop")
        ok, t1 = parent.recv()
        if not ok:
            raise RuntimeError("the child's wait returned without the stop")
        return t1 - t0

    le, ls, ll = [], [], []
    try:
        for i in range(n):
            ev.clear()
            ask(("event",))
            t0 = now()
            ev.set()
            le.append(result(t0))
            if with_stopper:
                name = f"bench-py-{os.getpid()}-{i}"
                s = opener(name)
                try:
                    ask(("stopper", name))
                    t0 = now()
                    s.stop()
                    ls.append(result(t0))
                finally:
                    s.close()
                    unlink(name)
                ll.append(one_wake(stopper.Stopper, lambda s: s.wait(), lambda s: s.stop()))
        parent.send(("quit",))
        p.join(10)
    finally:
        if p.is_alive():
            p.kill()
            p.join(5)
    emit_samples("py_proc_wake_event", le)
    if with_stopper:
        emit_samples("py_proc_wake_stopper", ls)
        emit_samples("py_proc_wake_local", ll)
    progress("cross-process wake")


# ---------------------------------------------------------------- recipes: stop-to-exit


def recipe_threads():
    """The recipes' own versions, all at once, started at phases spread over their periods."""
    k = 2 if SMOKE else 8
    sleep_period, q_timeout = (0.05, 0.025) if SMOKE else (1.0, 0.5)
    results = {"sleep": [], "queue": []}
    stops = []  # (event, box, kind)

    def sleep_loop(ev, box):  # RECIPES 2: the StoppableThread with time.sleep(1)
        while not ev.is_set():
            time.sleep(sleep_period)
        box["t1"] = now()

    def queue_loop(ev, box, q):  # RECIPES 4: the QueueWorker's get(timeout=0.5) loop
        while not ev.is_set():
            try:
                q.get(timeout=q_timeout)
            except queue.Empty:
                continue
        box["t1"] = now()

    threads = []
    # interleave the starts so that each kind's k threads spread over its own period
    steps = 2 * k
    for i in range(steps):
        ev, box = threading.Event(), {}
        if i % 2 == 0:
            threads.append(start_daemon(sleep_loop, ev, box))
            stops.append((ev, box, "sleep"))
        else:
            threads.append(start_daemon(queue_loop, ev, box, queue.Queue()))
            stops.append((ev, box, "queue"))
        time.sleep(sleep_period / steps)
    random.shuffle(stops)
    for ev, box, _ in stops:
        box["t0"] = now()
        ev.set()
    for t in threads:
        t.join(sleep_period * 3 + 2)
    for _, box, kind in stops:
        if "t1" in box:
            results[kind].append(box["t1"] - box["t0"])
    emit_samples("recipe_sleep_loop", results["sleep"])
    emit_samples("recipe_queue_get", results["queue"])
    emit(kind="value", id="recipe_sleep_period", unit="s", value=sleep_period)
    emit(kind="value", id="recipe_queue_timeout", unit="s", value=q_timeout)

    progress("recipes")


def cookbook_pair(with_stopper):
    """RECIPES 1: the Cookbook thread sleeps in Event.wait(1.0), which set() ends at once; its
    stopper version sleeps in s.wait(1.0). Sampled interleaved, one thread at a time."""
    n = 3 if SMOKE else 100

    def one(obj, stop):
        box = {}

        def cookbook():
            box["armed"] = True
            try:
                while not obj.is_set():
                    obj.wait(1.0)
            except BaseException as e:
                box["error"] = e
                return
            box["t1"] = now()

        t = start_daemon(cookbook)
        wait_flag(box, "armed")
        t0 = now()
        stop(obj)
        t.join(3)
        check_box(box, "the Cookbook thread did not exit within 3 s of the stop")
        return box["t1"] - t0

    ev_lat, st_lat = [], []
    for _ in range(n):
        ev_lat.append(one(threading.Event(), lambda e: e.set()))
        if with_stopper:
            try:
                st_lat.append(one(stopper.Stopper(), lambda s: s.stop()))
            except Exception as e:
                note(f"stopper_event_wait: skipped, {type(e).__name__}: {e}")
                with_stopper = False
    emit_samples("recipe_event_wait", ev_lat)
    if with_stopper:
        emit_samples("stopper_event_wait", st_lat)
    progress("Cookbook pair")


def stopper_recipes():
    n = 3 if SMOKE else 100

    def run(body, stop_obj_maker=stopper.Stopper):
        lat = []
        for _ in range(n):
            s = stop_obj_maker()
            box = {}

            def worker(s=s, box=box):
                box["armed"] = True
                try:
                    body(s)
                except BaseException as e:
                    box["error"] = e
                    return
                box["t1"] = now()

            t = start_daemon(worker)
            wait_flag(box, "armed")
            t0 = now()
            s.stop()
            t.join(3)
            check_box(box, "the worker did not exit within 3 s of the stop")
            lat.append(box["t1"] - t0)
        return lat

    def sleep_loop(s):  # sleep(1) -> s.wait(1)
        while not s.is_set():
            s.wait(1.0)

    def queue_loop(s):  # queue.get(timeout=0.5) -> Channel.get(stopper=s)
        ch = stopper.Channel()
        try:
            while True:
                ch.get(stopper=s)
        except stopper.StopRequested:
            pass

    for id_, body in (("stopper_sleep_loop", sleep_loop), ("stopper_queue_get", queue_loop)):
        try:
            emit_samples(id_, run(body))
        except Exception as e:
            note(f"{id_}: skipped, {type(e).__name__}: {e}")
    progress("stopper recipes")


# ---------------------------------------------------------------- async raise


class Raised(Exception):
    pass


def async_raise_recipe():
    """RECIPES 3 (ThreadWithExc): PyThreadState_SetAsyncExc into a thread in time.sleep(0.5)."""
    k = 2 if SMOKE else 4
    period = 0.05 if SMOKE else 0.5
    set_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    set_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
    set_exc.restype = ctypes.c_int
    boxes, threads = [], []

    def body(box):
        try:
            while True:
                time.sleep(period)
        except Raised:
            box["t1"] = now()

    for i in range(k):
        box = {}
        threads.append(start_daemon(body, box))
        boxes.append(box)
        time.sleep(period / k)
    for t, box in zip(threads, boxes):
        box["t0"] = now()
        if set_exc(t.ident, ctypes.py_object(Raised)) != 1:
            set_exc(t.ident, None)
            raise RuntimeError("PyThreadState_SetAsyncExc did not modify exactly one thread")
    for t in threads:
        t.join(period * 3 + 1)
    emit_samples("raise_recipe_sleep", [b["t1"] - b["t0"] for b in boxes if "t1" in b])
    emit(kind="value", id="raise_recipe_period", unit="s", value=period)
    progress("async raise (recipe)")


def async_raise_stopper():
    """StoppableThread(interrupt=True) blocked in a wait on another stopper; stop() -> StopRequested."""
    n = 3 if SMOKE else 100
    lat = []
    for i in range(n):
        other = stopper.Stopper()
        box = {}

        def body(box=box, other=other):
            box["armed"] = True
            try:
                other.wait(2.0)
                box["late"] = True
                time.sleep(0.2)  # the exception may still arrive; let it land here
            except stopper.StopRequested:
                box["t1"] = now()
            except BaseException as e:
                box["error"] = e

        t = stopper.StoppableThread(target=body, interrupt=True, daemon=True)
        t.start()
        wait_flag(box, "armed")
        t0 = now()
        t.stop()
        t.join(3)
        check_box(box, "StopRequested was not raised inside the thread within 3 s")
        lat.append(box["t1"] - t0)
        if i >= 2 and max(lat) > 100_000_000:
            note("async raise into a stopper wait took > 100 ms: sampling cut short")
            break
    emit_samples("raise_stopper_wait", lat)
    progress("async raise (stopper)")


# ---------------------------------------------------------------- timers vs deadlines


def timers_vs_deadlines(with_stopper):
    n = 20 if SMOKE else 1000
    gc.collect()
    th0, rss0, t0 = threads_now(), rss_now(), now()
    timers = [threading.Timer(60.0, lambda: None) for _ in range(n)]
    for t in timers:
        t.start()
    t1 = now()
    emit(kind="value", id="timer_threads", unit="threads", value=threads_now() - th0)
    emit(kind="value", id="timer_rss_per", unit="B", value=(rss_now() - rss0) / n)
    emit(kind="value", id="timer_arm_us", unit="us", value=(t1 - t0) / n / 1000)
    for t in timers:
        t.cancel()
    for t in timers:
        t.join(5)
    del timers
    gc.collect()
    emit(kind="value", id="timer_count", unit="", value=n)
    if with_stopper:
        try:
            th0, rss0, t0 = threads_now(), rss_now(), now()
            ss = [stopper.Stopper() for _ in range(n)]
            for s in ss:
                s.stop_after(60.0)
            t1 = now()
            emit(kind="value", id="deadline_py_threads", unit="threads", value=threads_now() - th0)
            emit(kind="value", id="deadline_py_rss_per", unit="B", value=(rss_now() - rss0) / n)
            emit(kind="value", id="deadline_py_arm_us", unit="us", value=(t1 - t0) / n / 1000)
            rem = ss[0].remaining()
            if rem is None or not (0 < rem <= 60.0):
                note(f"Stopper.remaining() after stop_after(60) returned {rem!r}")
            for s in ss:
                s.stop()
        except Exception as e:
            note(f"stopper deadlines: skipped, {type(e).__name__}: {e}")
    progress("timers vs deadlines")


def guarded(fn, *args):
    try:
        fn(*args)
    except Exception as e:
        note(f"{fn.__name__}: failed, {type(e).__name__}: {e}")
        return False
    return True


def main():
    emit(kind="meta", program="py_bench", python=sys.version.split()[0], smoke=SMOKE,
         stopper=(getattr(stopper, "__file__", None) if stopper else None))
    have = stopper is not None
    if not have:
        note(f"Python stopper rows skipped: cannot import stopper ({IMPORT_ERROR})")
    ok = True
    if have:
        guarded(bench_is_set)
        guarded(bench_import)
    ok &= guarded(bench_wake, False) if not have else (guarded(bench_wake, True) or guarded(bench_wake, False))
    if have:
        ok &= guarded(bench_cross_process, True) or guarded(bench_cross_process, False)
    else:
        ok &= guarded(bench_cross_process, False)
    ok &= guarded(recipe_threads)
    ok &= guarded(cookbook_pair, have)
    if have:
        guarded(stopper_recipes)
    ok &= guarded(async_raise_recipe)
    if have:
        guarded(async_raise_stopper)
    ok &= guarded(timers_vs_deadlines, have)
    # The reference (standard-library) measurements must work; a failure there is a bench bug.
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
