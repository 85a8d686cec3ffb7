"""Stopping unmodified library code: urllib, sqlite3, subprocess, queue.

    python unmodified_libraries.py [--check]

Nothing below was written for stopper except the few lines that start and stop the threads.
`stopper.patch()` (called first, before anything binds the patched names) makes the standard
library's blocking calls checkpoints for threads inside an interruptible scope; sqlite3's long
query, which is C code no patch reaches, is ended by `Connection.interrupt()` from a stop
callback. Each example prints how long the thread took to end after the stop; `--check` also
asserts < 200 ms and that cleanup ran (the child process is gone, the database is closed).
"""

import os
import queue
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request

import stopper

stopper.patch()  # first: code that imported a name before keeps the original

CHECK = "--check" in sys.argv
BOUND = 0.2
failures = []


def report(name, secs, ok, detail=""):
    good = ok and secs < BOUND
    if not good:
        failures.append(name)
    print(f"{'ok  ' if good else 'FAIL'} {name:<36} ended {secs * 1000:7.2f} ms after the stop  {detail}")


def stop_and_time(thread, s, settle=0.2):
    """Lets `thread` block, stops `s`, returns seconds until the thread has ended."""
    time.sleep(settle)
    t0 = time.monotonic()
    s.stop()
    thread.join(10)
    return time.monotonic() - t0


# ---------------------------------------------------------------- urllib
def urllib_example():
    """urlopen() to a server that accepts and never answers: the read ends on the stop."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    url = "http://127.0.0.1:%d/" % silent.getsockname()[1]
    s = stopper.Stopper()
    seen = {}

    def fetch():
        with s.interruptible("checkpoint"):
            try:
                with urllib.request.urlopen(url) as response:  # unmodified library code
                    seen["body"] = response.read()
            except stopper.StopRequested:
                seen["stopped"] = True
                raise

    t = stopper.StoppableThread(target=fetch, name="urlopen")
    t.start()
    secs = stop_and_time(t, s)
    silent.close()
    report("urllib.request.urlopen (silent server)", secs, seen.get("stopped", False))


# ---------------------------------------------------------------- sqlite3
def sqlite_example():
    """A query that would run for minutes: a stop callback interrupts it; cleanup runs."""
    s = stopper.Stopper()
    seen = {}

    def long_query():
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        on_stop = s.on_stop(lambda reason: conn.interrupt())  # runs on the stopping thread
        try:
            with s.interruptible("checkpoint"):  # checkpoint mode: nothing lands in except/finally
                conn.execute(
                    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                    "SELECT count(*) FROM c"
                ).fetchone()
        except sqlite3.OperationalError as e:
            seen["error"] = str(e)  # "interrupted"
        finally:
            on_stop.cancel()
            conn.close()  # always reached: the cleanup of an interrupted C call runs in full
            seen["closed"] = True

    t = threading.Thread(target=long_query, name="sqlite")
    t.start()
    secs = stop_and_time(t, s)
    ok = seen.get("error") == "interrupted" and seen.get("closed", False)
    report("sqlite3 long query", secs, ok, f"({seen.get('error')}; connection closed: {seen.get('closed', False)})")


# ---------------------------------------------------------------- subprocess
def _children():
    pids = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids.update(int(p) for p in f.read().split())
        except OSError:
            pass
    return pids


def subprocess_example():
    """subprocess.run(["sleep", "100"]): run() kills its child when the stop unwinds it."""
    s = stopper.Stopper()
    seen = {}

    def run_child():
        with s.interruptible("checkpoint"):
            try:
                subprocess.run(["sleep", "100"])  # unmodified
            except stopper.StopRequested:
                seen["stopped"] = True

    before = _children()
    t = threading.Thread(target=run_child, name="subprocess")
    t.start()
    time.sleep(0.2)
    child = (_children() - before).pop()
    secs = stop_and_time(t, s, settle=0)
    gone = not os.path.exists(f"/proc/{child}")
    report("subprocess.run(['sleep', '100'])", secs, seen.get("stopped", False) and gone,
           f"(child {child} {'killed and reaped' if gone else 'STILL THERE'})")


# ---------------------------------------------------------------- queue
def queue_example():
    """A plain consumer loop on queue.Queue, in a StoppableThread(interrupt="checkpoint")."""
    q = queue.Queue()
    done = []

    def consume():
        while True:
            item = q.get()  # unmodified: blocks until an item comes
            done.append(item)
            q.task_done()

    t = stopper.StoppableThread(target=consume, interrupt="checkpoint", name="consumer")
    t.start()
    for i in range(3):
        q.put(i)
    q.join()
    time.sleep(0.2)
    t0 = time.monotonic()
    t.join()  # stop, then join: the q.get() it is blocked in raises StopRequested
    secs = time.monotonic() - t0
    report("queue.Queue.get consumer loop", secs, done == [0, 1, 2] and not t.is_alive())


def main():
    urllib_example()
    sqlite_example()
    subprocess_example()
    queue_example()
    if failures:
        print(f"{len(failures)} failed: {', '.join(failures)}")
        if CHECK:
            sys.exit(1)
    else:
        print("4 passed, 0 failed")


if __name__ == "__main__":
    main()
