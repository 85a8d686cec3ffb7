"""Cancel means stop (docs/cancel-means-stop.md): an executor task, an asyncio to_thread and a
process tree, each cancelled the way its framework cancels, with and without stopper.

    python frameworks.py           # what each cancel does, and how long the thread/tree ran on
    python frameworks.py --check   # only the stopper versions; fails if one takes >= 200 ms
"""

import argparse
import asyncio
import concurrent.futures
import os
import sys
import tempfile
import threading
import time

import stopper
import stopper.aio
import stopper.futures
import stopper.subprocess

WORK = 1.0  # seconds each piece of work would run if nobody stopped it


def executor(use_stopper):
    """Future.cancel() of a running task: how long until the task's thread is free again."""
    pool = stopper.futures.ThreadPoolExecutor(1) if use_stopper else concurrent.futures.ThreadPoolExecutor(1)
    started = threading.Event()
    ended = []

    def task():
        started.set()
        try:
            (stopper.sleep if use_stopper else time.sleep)(WORK)
        finally:
            ended.append(time.perf_counter())

    with pool:
        f = pool.submit(task)
        started.wait()
        time.sleep(0.05)
        t0 = time.perf_counter()
        answer = f.cancel()
    return f"cancel() -> {answer}", ended[0] - t0


def asyncio_to_thread(use_stopper):
    """asyncio.wait_for(to_thread(...), 0.05) times out: how long the thread runs on."""
    ended = []

    def work():
        try:
            (stopper.sleep if use_stopper else time.sleep)(WORK)
        finally:
            ended.append(time.perf_counter())

    async def main():
        to_thread = stopper.aio.to_thread if use_stopper else asyncio.to_thread
        t0 = time.perf_counter()
        try:
            await asyncio.wait_for(to_thread(work), 0.05)
        except asyncio.TimeoutError:
            pass
        returned = time.perf_counter()
        return t0 + 0.05, returned

    fired, returned = asyncio.run(main())  # asyncio.run waits for the default executor's thread
    return f"await returned {1000 * (returned - fired):.0f} ms after the time-out", ended[0] - fired


def process_tree(use_stopper):
    """sh -c 'sleep & sleep & wait' stopped: how long until no process of the tree is left."""
    with tempfile.TemporaryDirectory() as d:
        pidfile = os.path.join(d, "pids")
        script = f"sleep {WORK} & echo $! >> {pidfile}; sleep {WORK} & echo $! >> {pidfile}; wait"
        s = stopper.Stopper()
        if use_stopper:
            t = threading.Timer(0.1, s.stop)
            t.start()
            t0 = time.perf_counter() + 0.1
            try:
                stopper.subprocess.run(["sh", "-c", script], stopper=s, grace=2.0)
            except stopper.StopRequested:
                pass
        else:
            import subprocess

            t0 = time.perf_counter() + 0.1
            try:
                subprocess.run(["sh", "-c", script], timeout=0.1)
            except subprocess.TimeoutExpired:
                pass  # the shell was killed; its two sleeps were not
        with open(pidfile) as f:
            pids = [int(x) for x in f.read().split()]
        left = [p for p in pids if _alive(p)]
        while left:  # watch the orphans end by themselves (demo only)
            time.sleep(0.01)
            left = [p for p in pids if _alive(p)]
        return ("nothing left" if use_stopper else f"{len(pids)} grandchildren orphaned"), time.perf_counter() - t0


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


CASES = [
    ("executor task, Future.cancel()", executor),
    ("asyncio.to_thread under wait_for", asyncio_to_thread),
    ("process tree (sh + 2 sleeps)", process_tree),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="stopper versions only; assert < 200 ms")
    args = ap.parse_args()
    failed = False
    print(f"{'cancelled':34} {'with':8} {'what the cancel did':42} {'ran on after it':>15}")
    for name, case in CASES:
        for use in ([True] if args.check else [False, True]):
            what, dt = case(use)
            print(f"{name:34} {'stopper' if use else 'stdlib':8} {what:42} {1000 * dt:12.1f} ms")
            if use and dt >= 0.2:
                failed = True
    if failed:
        print("FAIL: a stopper version took 200 ms or more", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
