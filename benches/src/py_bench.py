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


# ---------------------------------------------------------------- cancel means stop (frameworks)
# Per framework: the time from the cancel (just before it) to the end of the thread doing the
# work (its last statement, or the return of serve()/run()), with stopper and with the framework
# alone.  The framework alone never ends the thread (cancel() is refused, the thread runs on) or
# ends it by a poll: its rows use the usual poll, a flag checked every POLL_S.
FW_POLL_S = 0.05


def _fw_samples(n_stopper, n_ref):
    return (5, 3) if SMOKE else (n_stopper, n_ref)


def fw_executor():
    import concurrent.futures
    import stopper.futures

    n, nr = _fw_samples(300, 40)
    ls, lr = [], []
    with stopper.futures.ThreadPoolExecutor(1) as ex:
        for _ in range(n):
            started, box = threading.Event(), {}

            def task():
                started.set()
                try:
                    stopper.sleep(10)
                finally:
                    box["end"] = now()

            f = ex.submit(task)
            started.wait(5)
            time.sleep(0.001)
            t0 = now()
            if not f.cancel():
                raise RuntimeError("cancel() of a running task returned False")
            ls.append(box["end"] - t0)
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        for _ in range(nr):
            started, flag, box = threading.Event(), threading.Event(), {}

            def polling_task():
                started.set()
                while not flag.is_set():
                    time.sleep(FW_POLL_S)
                box["end"] = now()

            f = ex.submit(polling_task)
            started.wait(5)
            time.sleep(random.random() * FW_POLL_S)
            t0 = now()
            f.cancel()  # refused: it is running
            flag.set()
            f.result(5)
            lr.append(box["end"] - t0)
    emit_samples("fw_executor_stopper", ls)
    emit_samples("fw_executor_poll", lr)
    progress("frameworks: executor")


def fw_asyncio():
    import asyncio
    import stopper.aio

    n, nr = _fw_samples(300, 40)

    async def main():
        ls, lr = [], []
        for _ in range(n):
            started, box = threading.Event(), {}

            def work():
                started.set()
                try:
                    stopper.sleep(10)
                finally:
                    box["end"] = now()

            task = asyncio.ensure_future(stopper.aio.to_thread(work))
            while not started.is_set():
                await asyncio.sleep(0.0005)
            t0 = now()
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            ls.append(box["end"] - t0)
        loop = asyncio.get_running_loop()
        for _ in range(nr):
            started, flag, box = threading.Event(), threading.Event(), {}

            def polling():
                started.set()
                while not flag.is_set():
                    time.sleep(FW_POLL_S)
                box["end"] = now()

            fut = loop.run_in_executor(None, polling)
            while not started.is_set():
                await asyncio.sleep(0.0005)
            await asyncio.sleep(random.random() * FW_POLL_S)
            t0 = now()
            fut.cancel()  # the await ends; the thread does not: the usual fix is a flag it polls
            flag.set()
            while "end" not in box:
                await asyncio.sleep(0.001)
            lr.append(box["end"] - t0)
        return ls, lr

    ls, lr = asyncio.run(main())
    emit_samples("fw_asyncio_stopper", ls)
    emit_samples("fw_asyncio_poll", lr)
    progress("frameworks: asyncio")


def fw_subprocess():
    import subprocess
    import stopper.subprocess

    n, nr = _fw_samples(100, 30)
    ls, lr = [], []
    for _ in range(n):
        s = stopper.Stopper()
        box = {}

        def runner():
            try:
                stopper.subprocess.run(["sleep", "10"], stopper=s, grace=5)
            except stopper.StopRequested:
                box["end"] = now()

        t = start_daemon(runner)
        time.sleep(0.02)
        t0 = now()
        s.stop()
        t.join(10)
        ls.append(box["end"] - t0)
    for _ in range(nr):
        flag, box = threading.Event(), {}

        def polling_runner():
            p = subprocess.Popen(["sleep", "10"])
            while p.poll() is None:
                if flag.is_set():
                    p.terminate()
                time.sleep(FW_POLL_S)
            box["end"] = now()

        t = start_daemon(polling_runner)
        time.sleep(0.02 + random.random() * FW_POLL_S)
        t0 = now()
        flag.set()
        t.join(10)
        lr.append(box["end"] - t0)
    emit_samples("fw_subprocess_stopper", ls)
    emit_samples("fw_subprocess_poll", lr)
    progress("frameworks: subprocess")


def fw_serve():
    import socketserver

    n, nr = _fw_samples(100, 10)
    ls, lr = [], []

    class Quiet(socketserver.BaseRequestHandler):
        def handle(self):
            pass

    for _ in range(n):
        srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Quiet)
        s = stopper.Stopper()
        box = {}

        def serving():
            stopper.serve(srv, s)
            box["end"] = now()

        t = start_daemon(serving)
        time.sleep(0.005)
        t0 = now()
        s.stop()
        t.join(10)
        srv.server_close()
        ls.append(box["end"] - t0)
    for _ in range(nr):
        srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Quiet)
        box = {}

        def serving_forever():
            srv.serve_forever()
            box["end"] = now()

        t = start_daemon(serving_forever)
        time.sleep(0.005 + random.random() * 0.5)
        t0 = now()
        srv.shutdown()
        t.join(10)
        srv.server_close()
        lr.append(box["end"] - t0)
    emit_samples("fw_serve_stopper", ls)
    emit_samples("fw_serve_shutdown", lr)
    progress("frameworks: serve")


_FW_GRPC_SERVER = r"""
import sys, time, threading
from concurrent import futures
import grpc, stopper, stopper.grpc
lock = threading.Lock()
def say(*w):
    with lock:
        print(*w, flush=True)
def block(request, context):
    say("started")
    try:
        stopper.sleep(60)
    finally:
        say("ended", time.perf_counter_ns())
    return b""
def polling(request, context):
    say("started")
    while context.is_active():
        time.sleep(%(poll)r)
    say("ended", time.perf_counter_ns())
    return b""
ident = lambda b: b
h = {"Block": grpc.unary_unary_rpc_method_handler(block, ident, ident),
     "Poll": grpc.unary_unary_rpc_method_handler(polling, ident, ident)}
server = grpc.server(futures.ThreadPoolExecutor(4), interceptors=[stopper.grpc.server_interceptor()])
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("b.P", h),))
print("port", server.add_insecure_port("127.0.0.1:0"), flush=True)
server.start()
sys.stdin.read()
server.stop(None)
"""


def fw_grpc():
    import subprocess
    try:
        import grpc
    except ImportError:
        note("frameworks: gRPC rows skipped, grpcio is not installed")
        return
    import stopper.grpc

    n, nr = _fw_samples(100, 20)
    p = subprocess.Popen([sys.executable, "-c", _FW_GRPC_SERVER % {"poll": FW_POLL_S}],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(p.stdout.readline().split()[1])
        ch = grpc.insecure_channel(f"127.0.0.1:{port}")
        ls, lr = [], []
        for name, count, out in (("Block", n, ls), ("Poll", nr, lr)):
            method = ch.unary_unary(f"/b.P/{name}")
            for _ in range(count):
                s = stopper.Stopper()

                def client():
                    try:
                        stopper.grpc.call(method, b"", stopper=s)
                    except (stopper.StopRequested, grpc.RpcError):
                        pass

                t = start_daemon(client)
                line = p.stdout.readline()
                assert line.startswith("started"), line
                time.sleep(0.002 + (random.random() * FW_POLL_S if name == "Poll" else 0))
                t0 = now()
                s.stop()
                line = p.stdout.readline().split()
                out.append(int(line[1]) - t0)  # CLOCK_MONOTONIC: one clock for both processes
                t.join(10)
        ch.close()
    finally:
        p.stdin.close()
        p.wait(20)
    emit_samples("fw_grpc_stopper", ls)
    emit_samples("fw_grpc_is_active_poll", lr)
    progress("frameworks: gRPC")


def frameworks():
    """Cancel-to-thread-ended per framework (docs/cancel-means-stop.md); a summary note."""
    for fn in (fw_executor, fw_asyncio, fw_subprocess, fw_serve, fw_grpc):
        guarded(fn)


# ---------------------------------------------------------------- stopper.sync and stopper.patch()
def _stop_to_exit(make, n, label, mode="checkpoint"):
    """Median/p99 of stop-to-exit of a thread blocked in make()'s call inside an interruptible
    scope: from just before s.stop() to the StopRequested caught in the thread."""
    lat = []
    for _ in range(n):
        call, cleanup = make()
        s = stopper.Stopper()
        box = {}

        def body(call=call, s=s, box=box):
            try:
                with s.interruptible(mode):
                    box["in"] = True
                    call()
            except stopper.StopRequested:
                box["t1"] = now()
            except BaseException as e:  # noqa: BLE001 - reported by check_box
                box["error"] = e

        t = start_daemon(body)
        wait_flag(box, "in")
        time.sleep(0.002)  # let it block
        box["t0"] = now()
        s.stop()
        t.join(5)
        cleanup()
        check_box(box, f"{label}: the thread did not end within 5 s of the stop")
        lat.append(box["t1"] - box["t0"])
    return lat


def _never_ends(make):
    """The same call outside any patch/scope: does a stop end it within 200 ms?  (It does not.)"""
    call, cleanup = make()
    box = {}
    s = stopper.Stopper()

    def body():
        try:
            with s.interruptible("checkpoint"):
                call()
            box["t1"] = now()
        except BaseException as e:  # noqa: BLE001
            box["error"] = e

    t = start_daemon(body)
    time.sleep(0.01)
    s.stop()
    t.join(0.2)
    alive = t.is_alive()
    cleanup()
    return alive


def _nothing():
    return None


def _sync_cases():
    import stopper.sync as ss

    def lock():
        lk = ss.Lock()
        lk.acquire()
        return lk.acquire, _nothing

    def rlock():
        lk = ss.RLock()
        lk.acquire()
        return lk.acquire, _nothing

    def condition():
        c = ss.Condition()

        def call():
            with c:
                c.wait()

        return call, _nothing

    def semaphore():
        return ss.Semaphore(0).acquire, _nothing

    def event():
        return ss.Event().wait, _nothing

    def barrier():
        return ss.Barrier(2).wait, _nothing

    def queue_get():
        return ss.Queue().get, _nothing

    def queue_put():
        q = ss.Queue(1)
        q.put(0)
        return (lambda: q.put(1)), _nothing

    def simple_queue():
        return ss.SimpleQueue().get, _nothing

    def sleep():
        return (lambda: ss.sleep(3600)), _nothing

    return [("Lock.acquire", lock), ("RLock.acquire", rlock), ("Condition.wait", condition),
            ("Semaphore.acquire", semaphore), ("Event.wait", event), ("Barrier.wait", barrier),
            ("Queue.get", queue_get), ("Queue.put (full)", queue_put), ("SimpleQueue.get", simple_queue),
            ("sleep(3600)", sleep)]


def _patch_cases():
    import select
    import selectors
    import socket
    import subprocess

    keep = []

    def closing(*objs):
        def close():
            for o in objs:
                o.close()
        return close

    def sleep():
        return (lambda: time.sleep(3600)), _nothing

    def queue_get():
        return queue.Queue().get, _nothing

    def lock():
        lk = threading.Lock()
        lk.acquire()
        return lk.acquire, _nothing

    def event():
        return threading.Event().wait, _nothing

    def join():
        ev = threading.Event()
        t = threading.Thread(target=ev.wait, daemon=True)
        t.start()
        return t.join, ev.set

    def recv():
        a, b = socket.socketpair()
        return (lambda: a.recv(1)), closing(a, b)

    def accept():
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        return srv.accept, closing(srv)

    def sel():
        a, b = socket.socketpair()
        return (lambda: select.select([a], [], [])), closing(a, b)

    def poll():
        a, b = socket.socketpair()
        p = select.poll()
        p.register(a, select.POLLIN)
        keep.append(p)
        return p.poll, closing(a, b)

    def selector():
        a, b = socket.socketpair()
        sl = selectors.DefaultSelector()
        sl.register(a, selectors.EVENT_READ)
        return sl.select, closing(sl, a, b)

    def popen_wait():
        p = subprocess.Popen(["sleep", "100"])

        def cleanup():
            p.kill()
            p.wait()
        return p.wait, cleanup

    def urlopen():
        import urllib.request
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        url = "http://127.0.0.1:%d/" % srv.getsockname()[1]
        return (lambda: urllib.request.urlopen(url)), closing(srv)

    return [("time.sleep(3600)", sleep), ("queue.Queue.get", queue_get), ("threading.Lock.acquire", lock),
            ("threading.Event.wait", event), ("Thread.join", join), ("socket.recv", recv),
            ("socket.accept", accept), ("select.select", sel), ("select.poll().poll", poll),
            ("selectors.DefaultSelector.select", selector), ("Popen.wait", popen_wait),
            ("urlopen (silent server)", urlopen)]


def _fmt_us(ns):
    return f"{ns / 1000:.0f} us" if ns >= 10_000 else f"{ns / 1000:.1f} us"


def bench_sync_stop():
    n = 10 if SMOKE else 200
    for name, make in _sync_cases():
        lat = _stop_to_exit(make, n, name)
        key = "sync_stop_" + name.split()[0].replace(".", "_").lower()
        emit_samples(key, lat)
        v = sorted(lat)
        note(f"stop-to-exit, stopper.sync {name} (checkpoint mode): median {_fmt_us(v[len(v) // 2])}, "
             f"p99 {_fmt_us(v[min(len(v) - 1, int(0.99 * len(v)))])} (goal <= 1 ms); "
             f"the threading/queue original: never (see the unpatched rows of stopper.patch())")
    progress("stopper.sync stop-to-exit")


def bench_patch_stop():
    n = 5 if SMOKE else 100
    cases = _patch_cases()
    baseline = {name: _never_ends(make) for name, make in cases}  # the same code, unpatched
    stopper.patch()
    try:
        for name, make in cases:
            lat = _stop_to_exit(make, max(3, n // 5) if name in ("Popen.wait", "urlopen (silent server)") else n, name)
            emit_samples("patch_stop_" + "".join(c if c.isalnum() else "_" for c in name.lower()), lat)
            v = sorted(lat)
            unpatched = "never (still blocked 200 ms after the stop)" if baseline[name] else "ended"
            note(f"stop-to-exit, patched {name}: median {_fmt_us(v[len(v) // 2])}, "
                 f"p99 {_fmt_us(v[min(len(v) - 1, int(0.99 * len(v)))])} (goal <= 1 ms); unpatched: {unpatched}")
    finally:
        stopper.unpatch()
    progress("stopper.patch() stop-to-exit")


def _per_call(fn, n):
    rng = range(n)
    t0 = now()
    for _ in rng:
        fn()
    return (now() - t0) / n


def bench_sync_lock_cost():
    import stopper.sync as ss

    rounds = 3 if SMOKE else 15
    n = 2_000 if SMOKE else 200_000
    ours, theirs = ss.Lock(), threading.Lock()
    va, vb = [], []
    for r in range(rounds + 1):
        a = _per_call(lambda a=ours.acquire, rl=ours.release: (a(), rl()), n)
        b = _per_call(lambda a=theirs.acquire, rl=theirs.release: (a(), rl()), n)
        if r:
            va.append(a)
            vb.append(b)
    emit(kind="pair", id="sync_lock_uncontended", a=va, b=vb)
    ma, mb = sorted(va)[len(va) // 2], sorted(vb)[len(vb) // 2]
    note(f"uncontended acquire+release: stopper.sync.Lock {ma:.0f} ns vs threading.Lock {mb:.0f} ns "
         f"= {ma / mb:.2f}x (goal <= 3x; both through a lambda calling the bound methods)")

    def with_ours(lk=ours):
        with lk:
            pass

    def with_theirs(lk=theirs):
        with lk:
            pass

    wa = sorted(_per_call(with_ours, n) for _ in range(rounds))[rounds // 2]
    wb = sorted(_per_call(with_theirs, n) for _ in range(rounds))[rounds // 2]
    note(f"uncontended `with lock:`: stopper.sync.Lock {wa:.0f} ns vs threading.Lock {wb:.0f} ns = {wa / wb:.2f}x")
    progress("stopper.sync.Lock cost")


def bench_patch_overhead():
    import select

    from stopper import _patch_calls as _patch

    rounds = 3 if SMOKE else 7
    n = 2_000 if SMOKE else 30_000
    fn = lambda: select.select([], [], [], 0)  # noqa: E731
    orig, patched = [], []
    for _ in range(rounds):  # interleaved, so that the machine's load hits both alike
        orig.append(_per_call(fn, n))
        stopper.patch()
        try:
            patched.append(_per_call(fn, n))
        finally:
            stopper.unpatch()
    emit(kind="pair", id="patch_overhead_select", a=patched, b=orig)
    mp, mo = min(patched), min(orig)  # best round: the least disturbed by the machine's load
    note(f"patched select.select([], [], [], 0) outside any scope: {mp:.0f} ns vs original {mo:.0f} ns "
         f"(best of {rounds} interleaved rounds): +{(mp - mo) / 1000:.3f} us per call (goal <= 0.2 us); "
         f"medians {sorted(patched)[rounds // 2]:.0f} vs {sorted(orig)[rounds // 2]:.0f} ns")
    local = _patch._local
    read = sorted(_per_call(lambda: local.cp, n * 5) for _ in range(rounds))[rounds // 2]
    empty = sorted(_per_call(lambda: None, n * 5) for _ in range(rounds))[rounds // 2]
    note(f"the thread-local check alone: {read - empty:.0f} ns per call over an empty Python call "
         f"({empty:.0f} ns here: the patched wrapper's own frame costs about that much again)")
    progress("stopper.patch() overhead outside scopes")


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
    if have:
        frameworks()
    if have and hasattr(stopper, "patch"):  # stopper.sync / stopper.patch(); patch() goes last
        guarded(bench_sync_lock_cost)
        guarded(bench_patch_overhead)
        guarded(bench_sync_stop)
        guarded(bench_patch_stop)
    # The reference (standard-library) measurements must work; a failure there is a bench bug.
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
