"""Runs each recipe in its original form and with stopper, stops each at a moment inside
its work, and prints the stop latency (from the stop request to the thread's end).

    python demo.py           # the table
    python demo.py --check   # only the stopper versions; fails if one takes >= 200 ms
"""

import argparse
import random
import socket
import statistics
import sys
import time

import originals
import with_stopper


def socket_pair_reader(cls):
    def make():
        a, b = socket.socketpair()
        b.send(b"hello")  # some traffic, then silence: the reader is blocked when stopped
        t = cls(a)
        t._peer = b
        return t

    return make


PAIRS = [
    ("1 Cookbook thread (Event.wait 1 s)", originals.CookbookThread, with_stopper.CookbookThread),
    ("2 StoppableThread (time.sleep 1 s)", originals.TutorialStoppableThread, with_stopper.TutorialStoppableThread),
    ("3 ThreadWithExc (re-send loop)", originals.ThreadWithExc, with_stopper.InterruptedThread),
    ("4 QueueWorker (get timeout 0.5 s)", originals.QueueWorker, with_stopper.ChannelWorker),
    ("socket reader (recv timeout 0.5 s)", socket_pair_reader(originals.PollingSocketReader), socket_pair_reader(with_stopper.SelectorSocketReader)),
]


def stop_latency(make, run_for):
    t = make()
    t.daemon = True
    t.start()
    time.sleep(run_for)
    t0 = time.perf_counter()
    t.request_stop()
    t.join(5)  # already stopped: join only waits
    dt = time.perf_counter() - t0
    if t.is_alive():
        raise SystemExit(f"{t.name} did not stop within 5 s")
    peer = getattr(t, "_peer", None)
    if peer is not None:
        peer.close()
        t.sock.close()
    return dt


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="stopper versions only; assert < 200 ms")
    ap.add_argument("--runs", type=int, default=None)
    args = ap.parse_args()
    rng = random.Random(7)
    runs = args.runs or (5 if args.check else 3)
    failed = 0
    if not args.check:
        print(f"{'recipe':38s} {'original (ms)':>16s} {'stopper (ms)':>14s}")
    for name, orig, mine in PAIRS:
        moments = [rng.uniform(0.15, 0.6) for _ in range(runs)]
        ours = [stop_latency(mine, m) * 1e3 for m in moments]
        if args.check:
            worst = max(ours)
            ok = worst < 200
            failed += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {name:38s} worst stop latency {worst:7.2f} ms")
            continue
        theirs = [stop_latency(orig, m) * 1e3 for m in moments]
        print(f"{name:38s} {statistics.median(theirs):9.1f} (max {max(theirs):6.0f}) {statistics.median(ours):7.2f} (max {max(ours):5.1f})")
    if args.check:
        print(f"{len(PAIRS) - failed} passed, {failed} failed")
        return 1 if failed else 0
    print("(median of %d stops at random moments; the originals' latency is set by their polling period)" % runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
