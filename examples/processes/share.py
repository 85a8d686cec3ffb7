"""One stop shared by a Python process and a C process (examples/processes).

1. Python stops, C wakes: starts ``build/peer wait NAME``, stops the shared stopper NAME,
   and checks that the C program woke with the reason given (it prints its wake latency).
2. C stops, Python wakes: blocks in ``Stopper.wait`` on a fresh NAME while
   ``build/peer stop NAME 43`` stops it from C.
3. A stop from C reaches this process's own callback and escalation: a watched process
   (here another ``peer wait`` on an unrelated name, which never wakes by itself) gets SIGTERM
   from this process's watch when the C program stops the shared stopper.

    python share.py [--peer build/peer]            # prints what happens
    python share.py --check [--rounds N]           # asserts it (N rounds each), exit 1 on failure
"""

import argparse
import os
import select
import signal
import subprocess
import sys
import threading
import time

import stopper

HERE = os.path.dirname(os.path.abspath(__file__))
BOUND_MS = 200.0  # generous: a stop takes well under a millisecond to cross


def read_line(p, timeout=10.0):
    r, _, _ = select.select([p.stdout], [], [], timeout)
    if not r:
        p.kill()
        raise SystemExit(f"share.py: no output from {p.args} within {timeout} s")
    return p.stdout.readline().strip()


def fresh(name):
    """A new run takes a new stopper: remove any old object of that name first."""
    stopper.unlink_shared(name, missing_ok=True)
    return stopper.Stopper.shared(name)


def python_stops_c_wakes(peer, name, reason):
    s = fresh(name)
    c = subprocess.Popen([peer, "wait", name], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert read_line(c) == "ready", "peer did not start"
        time.sleep(0.1)  # the C side is blocked in stopper_wait now
        t0 = time.monotonic_ns()
        s.stop(reason)
        c.stdin.write(f"{t0}\n")  # tells the C side when the stop was called
        c.stdin.flush()
        said = read_line(c)
        rc = c.wait(10)
    finally:
        if c.poll() is None:
            c.kill()
            c.wait()
    ok = rc == 0 and said.startswith(f"C woke: reason {reason},")
    us = float(said.split(", ")[1].split()[0]) if ok else float("nan")
    return ok, us / 1e3, said


def c_stops_python_wakes(peer, name, reason):
    s = fresh(name)
    c = subprocess.Popen([peer, "stop", name, str(reason), "100"], stdout=subprocess.PIPE, text=True)
    try:
        woke = s.wait(10)  # blocks here until the C program stops it
        t_woke = time.monotonic_ns()
        line = read_line(c)
        rc = c.wait(10)
    finally:
        if c.poll() is None:
            c.kill()
            c.wait()
    t0 = int(line.split()[-1]) if line.startswith("stopping at ") else 0
    ms = (t_woke - t0) / 1e6
    ok = woke and rc == 0 and s.reason == reason and t0 > 0
    return ok, ms, f"Python woke: reason {s.reason}, {ms * 1e3:.1f} us after the C stop call"


def c_stop_runs_python_escalation(peer, name, reason):
    s = fresh(name)
    victim_name = name + "-victim"  # a name nobody stops: the victim never wakes by itself
    stopper.unlink_shared(victim_name, missing_ok=True)
    victim = subprocess.Popen([peer, "wait", victim_name], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ran = threading.Event()
    seen = []
    s.on_stop(lambda r: (seen.append(r), ran.set()))
    try:
        assert read_line(victim) == "ready"
        s.watch_process(victim, grace=2.0)  # SIGTERM on the stop; SIGKILL 2 s later if needed
        c = subprocess.Popen([peer, "stop", name, str(reason), "50"], stdout=subprocess.PIPE, text=True)
        line = read_line(c)
        c.wait(10)
        rc = victim.wait(10)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
        stopper.unlink_shared(victim_name, missing_ok=True)
    t0 = int(line.split()[-1])
    ms = (time.monotonic_ns() - t0) / 1e6
    ok = ran.wait(5) and seen == [reason] and rc == -signal.SIGTERM
    return ok, ms, (
        f"the C stop ran this process's callback (reason {seen[0] if seen else None}) "
        f"and its watch: the watched peer ended by {signal.Signals(-rc).name if rc < 0 else f'exit {rc}'}"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer", default=os.path.join(HERE, "build", "peer"))
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not os.access(args.peer, os.X_OK):
        raise SystemExit(f"share.py: {args.peer} not found: run `make` in {HERE}")
    name = f"example-share-{os.getpid()}"
    rounds = args.rounds if args.check else 1
    passed = failed = 0
    try:
        for i in range(rounds):
            for what, fn, reason, timed in (
                ("Python stops, C wakes", python_stops_c_wakes, 42, True),
                ("C stops, Python wakes", c_stops_python_wakes, 43, True),
                ("C stops, Python escalates", c_stop_runs_python_escalation, 44, False),
            ):
                ok, ms, said = fn(args.peer, name, reason)
                if timed:
                    ok = ok and ms < BOUND_MS
                passed += ok
                failed += not ok
                if args.check:
                    bound = f" (bound {BOUND_MS:.0f} ms)" if timed else ""
                    print(f"{'ok  ' if ok else 'FAIL'} {what:27s} {said}{bound}")
                else:
                    print(f"{what:27s} {said}")
    finally:
        stopper.unlink_shared(name, missing_ok=True)
    if args.check:
        print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
