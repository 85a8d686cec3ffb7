"""Recipe 5, the nuclear option: work in processes, a shared flag, then terminate/kill.

The original (shared/RECIPES.md, 5): a ``multiprocessing.Process`` loops
``while not stop_event.is_set(): ...; time.sleep(1)`` over a ``multiprocessing.Event``; to
stop it by force, ``p.terminate()`` (SIGTERM), ``p.join(timeout=5)``, then ``p.kill()``
(SIGKILL) if it still runs.  The flag is seen up to 1 s late, and a worker that ignores
SIGTERM costs the whole 5 s.

With stopper: the workers wait on a shared stopper (``Stopper.shared(name)``), which wakes
them the moment any process stops it; the escalation is ``watch_process(p, grace)``,
armed once and run by the library (through a pidfd: a reused pid is never hit).

Each version runs two workers: a cooperative one (looks at the flag) and a stubborn one
(ignores SIGTERM and never looks at any flag: think of a long call into a library).
Printed: the time from the stop request to each worker's end.

    python processes.py           # both versions side by side (about 8 s)
    python processes.py --check   # stopper version only: cooperative < 200 ms, stubborn
                                  # SIGKILLed after its grace and not before
"""

import argparse
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time

import stopper

CTX = multiprocessing.get_context("fork")

#: The original's patience before terminate(): its worker looks at the flag once a second.
ORIGINAL_CHANCE = 1.2
#: The recipe's join timeout between terminate() and kill().
ORIGINAL_JOIN = 5.0
#: stopper: how long the cooperative stop has before SIGTERM (its workers react at once)...
COOPERATIVE_WAIT = 0.2
#: ...and how long SIGTERM has before SIGKILL.
GRACE = 0.5


# ---------------------------------------------------------------- the workers
def original_worker(stop_event):
    """Recipe 5 as written: one unit of work, then sleep 1 s, until the event is set."""
    count = 0
    while not stop_event.is_set():
        count += 1  # one unit of work
        time.sleep(1)


def stopper_worker(name):
    """The same loop over a shared stopper: its wait is the sleep, and wakes on the stop."""
    run = stopper.Stopper.shared(name)
    count = 0
    while not run.is_set():
        count += 1  # one unit of work
        run.wait(1)
    # here: release files, connections, locks — the chance the nuclear option never gives


def stubborn_worker(ready):
    """Ignores SIGTERM and never looks at any flag: only SIGKILL ends it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ready.set()
    while True:
        time.sleep(1)  # stands for a long call that never comes back to a check


# ---------------------------------------------------------------- measuring
class EndClock(threading.Thread):
    """Records when each process ends (its sentinel becomes readable), without reaping it."""

    def __init__(self, procs):
        super().__init__(daemon=True)
        self.pending = {p.sentinel: p for p in procs}
        self.ends = {}

    def run(self):
        while self.pending:
            for s in multiprocessing.connection.wait(list(self.pending), timeout=30):
                self.ends[self.pending.pop(s).pid] = time.perf_counter()


def start(procs):
    for p in procs:
        p.daemon = True
        p.start()


def how_it_ended(p):
    if p.exitcode == 0:
        return "exit 0"
    if p.exitcode is not None and p.exitcode < 0:
        return signal.Signals(-p.exitcode).name
    return f"exit {p.exitcode}"


# ---------------------------------------------------------------- the two versions
def run_original():
    stop_event = CTX.Event()
    ready = CTX.Event()
    coop = CTX.Process(target=original_worker, args=(stop_event,), name="cooperative")
    stub = CTX.Process(target=stubborn_worker, args=(ready,), name="stubborn")
    start([coop, stub])
    ready.wait(10)
    time.sleep(0.3)  # stopped in the middle of its work
    clock = EndClock([coop, stub])
    clock.start()

    t0 = time.perf_counter()
    stop_event.set()  # the cooperative stop
    chance = t0 + ORIGINAL_CHANCE
    for p in (coop, stub):
        p.join(max(0.0, chance - time.perf_counter()))
    for p in (coop, stub):  # the nuclear option
        if p.is_alive():
            p.terminate()
            p.join(timeout=ORIGINAL_JOIN)
            if p.is_alive():
                p.kill()
                p.join()
    clock.join(10)
    return {p.name: ((clock.ends[p.pid] - t0) * 1e3, how_it_ended(p)) for p in (coop, stub)}


def run_stopper():
    name = f"example-processes-{os.getpid()}"
    stopper.unlink_shared(name, missing_ok=True)
    run = stopper.Stopper.shared(name)  # the cooperative stop, seen by every process
    escalate = stopper.Stopper()  # what the watches act on: the cooperative stop comes first
    run.on_stop(lambda reason: escalate.stop_after(COOPERATIVE_WAIT))
    ready = CTX.Event()
    coop = CTX.Process(target=stopper_worker, args=(name,), name="cooperative")
    stub = CTX.Process(target=stubborn_worker, args=(ready,), name="stubborn")
    try:
        start([coop, stub])
        for p in (coop, stub):
            escalate.watch_process(p, grace=GRACE)  # SIGTERM, then SIGKILL after GRACE
        ready.wait(10)
        time.sleep(0.3)
        clock = EndClock([coop, stub])
        clock.start()

        t0 = time.perf_counter()
        run.stop()  # from any process (or a signal: run.stop_on_signal(signal.SIGTERM))
        for p in (coop, stub):
            p.join(10)  # the library escalates by itself; join only waits
        clock.join(10)
        return {p.name: ((clock.ends[p.pid] - t0) * 1e3, how_it_ended(p)) for p in (coop, stub)}
    finally:
        stopper.unlink_shared(name, missing_ok=True)
        for p in (coop, stub):
            if p.pid is not None and p.is_alive():
                p.kill()
                p.join()


def check(rounds):
    failed = passed = 0
    lo = (COOPERATIVE_WAIT + GRACE) * 1e3
    for i in range(rounds):
        got = run_stopper()
        ms, how = got["cooperative"]
        ok = ms < 200 and how == "exit 0"
        print(f"{'ok  ' if ok else 'FAIL'} cooperative worker stopped in {ms:7.2f} ms ({how}; must be < 200 ms, exit 0)")
        passed += ok
        failed += not ok
        ms, how = got["stubborn"]
        ok = how == "SIGKILL" and lo - 10 <= ms < lo + 2000
        print(
            f"{'ok  ' if ok else 'FAIL'} stubborn worker ended in {ms:7.1f} ms ({how}; must be SIGKILL, "
            f"not before {lo:.0f} ms = {COOPERATIVE_WAIT} s cooperative wait + {GRACE} s grace)"
        )
        passed += ok
        failed += not ok
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="stopper version only, with assertions")
    ap.add_argument("--rounds", type=int, default=3, help="rounds for --check (default 3)")
    args = ap.parse_args()
    if args.check:
        return check(args.rounds)
    orig = run_original()
    mine = run_stopper()
    print("recipe 5, processes: from the stop request to each worker's end")
    print(f"{'worker':40s} {'original':^22s} {'stopper':^22s}".rstrip())
    for who, label in (("cooperative", "cooperative (flag, 1 s sleep)"), ("stubborn", "stubborn (ignores SIGTERM, no checks)")):
        (oms, ohow), (sms, show) = orig[who], mine[who]
        print(f"{label:40s} {oms:9.1f} ms {ohow:>9s} {sms:9.1f} ms {show:>9s}")
    print(
        f"(original: Event checked every 1 s; terminate() after {ORIGINAL_CHANCE} s, join({ORIGINAL_JOIN:g}), kill().\n"
        f" stopper: shared stopper; watch_process: SIGTERM {COOPERATIVE_WAIT} s after the stop, SIGKILL {GRACE} s later)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
