"""Processes: shared stoppers across processes (forked and exec'd), TERM->KILL escalation,
stop on a signal (SPEC.md, "Processes"; issue 6).

Every test uses names unique to this process and unlinks them (the ``names`` fixture), so a
failed run leaves nothing behind in /dev/shm.  Timing bounds are generous: "woke within 5 s"
of a stop, "still alive just before the grace ends".
"""

import gc
import multiprocessing
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import stopper
from conftest import run_python

FORK = multiprocessing.get_context("fork")
PY = sys.executable


# ---------------------------------------------------------------- helpers
@pytest.fixture
def names(request):
    """``names()`` returns a fresh name (pid + test + counter), ``names(exact=n)`` registers
    ``n``; all of them are unlinked afterwards."""
    made = []

    def make(tag="t", exact=None):
        n = exact or f"pytest-{os.getpid()}-{request.node.name[:40]}-{tag}-{len(made)}"
        n = "".join(c if c.isalnum() or c in "_.-" else "_" for c in n)
        made.append(n)
        return n

    yield make
    gc.collect()
    for n in made:
        stopper.unlink_shared(n, missing_ok=True)
        assert not os.path.exists(f"/dev/shm/stopper.{n}")


def shm(name):
    return f"/dev/shm/stopper.{name}"


# Children start from the usual dispositions whatever this process inherited (a background
# job ignores SIGINT, nohup ignores SIGHUP): the signal tests depend on them.
RESET_SIGNALS = textwrap.dedent(
    """
    import signal as _signal
    for _sig in (_signal.SIGTERM, _signal.SIGHUP, _signal.SIGUSR1, _signal.SIGUSR2):
        _signal.signal(_sig, _signal.SIG_DFL)
    _signal.signal(_signal.SIGINT, _signal.default_int_handler)
    """
)


def run_clean(code):
    """run_python, from the usual signal dispositions."""
    return run_python(RESET_SIGNALS + textwrap.dedent(code))


def start_python(code, *args):
    """An exec'd Python process running ``code`` (with ``sys.argv[1:] == args``), from the
    usual signal dispositions; its stdout is a text pipe, one line per event."""
    return subprocess.Popen(
        [PY, "-c", RESET_SIGNALS + textwrap.dedent(code), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_line(p, timeout=10.0):
    """One line from ``p``'s stdout, or a failure after ``timeout`` seconds (never a hang)."""
    r, _, _ = select.select([p.stdout], [], [], timeout)
    assert r, f"no output from pid {p.pid} within {timeout} s"
    return p.stdout.readline().strip()


def finish(p, timeout=10.0):
    """Waits for ``p``; kills it on time-out so nothing is left running."""
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"pid {p.pid} did not end within {timeout} s; stderr: {err}")
    return p.returncode, out, err


WAITER = """
    import sys, time, stopper
    s = stopper.Stopper.shared(sys.argv[1])
    print("ready", s.is_set(), flush=True)
    woke = s.wait(20)
    print("woke", woke, s.reason, time.monotonic(), flush=True)
"""


def _fork_waiter(name, q):
    s = stopper.Stopper.shared(name)
    q.put(("ready", os.getpid(), s.is_set()))
    woke = s.wait(20)
    q.put(("woke", os.getpid(), woke, s.reason, time.monotonic()))


def _fork_stopper(name, reason, q):
    s = stopper.Stopper.shared(name)
    q.put(("stopping", time.monotonic()))
    q.put(("stopped", s.stop(reason)))


# ---------------------------------------------------------------- one stop, many processes
def test_forked_and_execd_children_all_woken_by_a_stop_in_another_process(names):
    name = names()
    s = stopper.Stopper.shared(name)  # this process too: it sees the flag in the shared page
    q = FORK.Queue()
    kids = [FORK.Process(target=_fork_waiter, args=(name, q), daemon=True) for _ in range(3)]
    for k in kids:
        k.start()
    ex = [start_python(WAITER, name) for _ in range(2)]
    try:
        ready = [q.get(timeout=15) for _ in kids]
        assert all(r[0] == "ready" and r[2] is False for r in ready)
        for p in ex:
            assert read_line(p) == "ready False"
        time.sleep(0.1)
        # nobody woke before the stop
        assert all(k.is_alive() for k in kids) and all(p.poll() is None for p in ex)
        assert not s.is_set()

        by = FORK.Process(target=_fork_stopper, args=(name, 42, q), daemon=True)
        by.start()
        got = [q.get(timeout=15) for _ in range(2 + len(kids))]
        by.join(5)
        assert by.exitcode == 0
        t_stop = next(g[1] for g in got if g[0] == "stopping")
        assert ("stopped", True) in got
        woke = [g for g in got if g[0] == "woke"]
        assert sorted(g[1] for g in woke) == sorted(k.pid for k in kids)
        for _, pid, ok, reason, t in woke:
            assert ok is True and reason == 42
            assert t_stop <= t < t_stop + 5, (pid, t - t_stop)
        for p in ex:
            line = read_line(p).split()
            assert line[:3] == ["woke", "True", "42"], line
            assert t_stop <= float(line[3]) < t_stop + 5
            rc, _, err = finish(p)
            assert rc == 0 and err == ""
        for k in kids:
            k.join(5)
            assert k.exitcode == 0
        # and here, without a call into the library: the flag byte lives in the shared page
        assert s.is_set() and s.reason == 42
        assert s.stop() is False
    finally:
        for p in ex:
            if p.poll() is None:
                p.kill()
                p.communicate()
        for k in kids:
            if k.is_alive():
                k.kill()
                k.join()


def test_stop_here_wakes_waiters_in_other_processes_each_time(names):
    # Repeated on purpose: a fresh shared stopper per round, waiters already blocked.
    for i in range(5):
        name = names(f"r{i}")
        s = stopper.Stopper.shared(name)
        p = start_python(WAITER, name)
        assert read_line(p) == "ready False"
        time.sleep(0.02)
        assert s.stop(100 + i) is True
        line = read_line(p).split()
        assert line[:3] == ["woke", "True", str(100 + i)]
        assert finish(p)[0] == 0


def test_late_opener_sees_it_stopped(names):
    name = names()
    s = stopper.Stopper.shared(name)
    s.stop(9)
    # another process, after the stop
    rc, out, err = run_python(
        f"""
        import stopper
        s = stopper.Stopper.shared({name!r})
        print(s.is_set(), s.reason, s.wait(0))
        """
    )
    assert (rc, out.split(), err) == (0, ["True", "9", "True"], "")
    # and after every opener has gone (only the name remains)
    del s
    gc.collect()
    rc, out, err = run_python(f"import stopper; s = stopper.Stopper.shared({name!r}); print(s.is_set(), s.reason)")
    assert (rc, out.split(), err) == (0, ["True", "9"], "")


def test_late_opener_gets_the_callbacks_of_its_own_process(names):
    name = names()
    stopper.Stopper.shared(name).stop(11)
    t = stopper.Stopper.shared(name)
    seen = []
    h = t.on_stop(seen.append)  # already stopped: runs at once, here
    assert seen == [11] and not h.registered
    assert select.select([t.fileno()], [], [], 5)[0]


def test_opening_twice_in_one_process_is_one_stopper(names):
    name = names()
    a = stopper.Stopper.shared(name)
    b = stopper.Stopper.shared(name)
    assert a == b and hash(a) == hash(b) and a is not b
    seen = []
    b.on_stop(seen.append)
    a.stop(5)
    assert b.is_set() and seen == [5]


def test_unlink_then_recreate_gives_a_fresh_one(names):
    name = names()
    old = stopper.Stopper.shared(name)
    p = start_python(WAITER, name)  # opened before the unlink: keeps sharing with `old`
    assert read_line(p) == "ready False"
    stopper.unlink_shared(name)
    assert not os.path.exists(shm(name))
    with pytest.raises(FileNotFoundError):
        stopper.unlink_shared(name)
    stopper.unlink_shared(name, missing_ok=True)

    new = stopper.Stopper.shared(name)
    assert os.path.exists(shm(name))
    assert new != old and not new.is_set()
    q = start_python(WAITER, name)  # opens the new one
    assert read_line(q) == "ready False"

    old.stop(3)
    assert read_line(p).split()[:3] == ["woke", "True", "3"]
    time.sleep(0.05)
    assert not new.is_set() and q.poll() is None  # the new object is another stopper
    new.stop(4)
    assert read_line(q).split()[:3] == ["woke", "True", "4"]
    assert finish(p)[0] == 0 and finish(q)[0] == 0
    assert old.reason == 3 and new.reason == 4


def test_stopped_one_unlinked_and_recreated_runs_again(names):
    name = names()
    for i in range(3):
        s = stopper.Stopper.shared(name)
        assert not s.is_set()
        s.stop(i + 1)
        stopper.unlink_shared(name)


# ---------------------------------------------------------------- refused objects
def _write_object(name, data, mode=0o600):
    fd = os.open(shm(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    "what,data",
    [
        ("garbage page", bytes((i * 37 + 11) % 256 for i in range(4096))),
        ("random page", os.urandom(4096)),
        ("truncated", b"stopper\x01" + b"\x00" * 8),
        # the right magic and a "ready" word (b"YDER"), but layout 99
        ("another layout", b"stopper\x01" + (99).to_bytes(4, "little") + (64).to_bytes(4, "little") + b"YDER" + b"\x00" * 4076),
        ("foreign magic", b"notastop" + b"\x01" * 4088),
    ],
)
def test_corrupt_object_is_refused(names, what, data):
    name = names()
    _write_object(name, data)
    with pytest.raises(ValueError) as ei:
        stopper.Stopper.shared(name)
    msg = str(ei.value)
    assert shm(name) in msg and "refused" in msg and "unlink_shared" in msg
    # refused, and not changed: nobody wrote into it
    with open(shm(name), "rb") as f:
        assert f.read() == data
    # the remedy the message names works
    stopper.unlink_shared(name)
    s = stopper.Stopper.shared(name)
    assert not s.is_set()


def test_empty_object_is_refused_after_a_bounded_wait(names):
    # An empty object looks like a creator still at work: waited for (bounded), then refused.
    name = names()
    _write_object(name, b"")
    t0 = time.monotonic()
    with pytest.raises(ValueError):
        stopper.Stopper.shared(name)
    assert time.monotonic() - t0 < 5


def test_object_open_to_others_is_refused(names):
    name = names()
    s = stopper.Stopper.shared(name)
    os.chmod(shm(name), 0o644)
    with pytest.raises(ValueError, match="open to other users"):
        stopper.Stopper.shared(name)  # also in the process that created it
    os.chmod(shm(name), 0o600)
    assert stopper.Stopper.shared(name) == s


@pytest.mark.skipif(os.geteuid() != 0, reason="making another user's object needs root")
def test_another_users_object_is_refused_naming_its_owner_and_what_to_do(names):
    # Another user's object on the name: we cannot remove it, so the error must not suggest
    # unlink_shared; it says whose it is and what to do instead.
    name = names()
    stopper.Stopper.shared(name)
    uid = 3000000 + os.getpid()  # no account has it
    os.chown(shm(name), uid, -1)
    try:
        with pytest.raises(ValueError) as ei:
            stopper.Stopper.shared(name + "")  # a fresh open of the object (same process)
        msg = str(ei.value)
        assert f"uid {uid}" in msg and "another name" in msg and "root" in msg
        assert "remove it with stopper.unlink_shared" not in msg
    finally:
        os.chown(shm(name), 0, -1)


def test_mode_is_0600(names):
    name = names()
    old = os.umask(0)
    try:
        stopper.Stopper.shared(name)
    finally:
        os.umask(old)
    assert os.stat(shm(name)).st_mode & 0o777 == 0o600


# ---------------------------------------------------------------- bad names
BAD_NAMES = ["", ".", "..", "a/b", "../etc", "/x", "x" * 201, "sp ace", "é", "a\0b", "a\nb", "tab\t"]


@pytest.mark.parametrize("bad", BAD_NAMES, ids=repr)
def test_bad_names_are_value_errors_naming_the_rule(bad):
    for call in (stopper.Stopper.shared, stopper.unlink_shared):
        with pytest.raises(ValueError) as ei:
            call(bad)
        assert "[A-Za-z0-9_.-]{1,200}" in str(ei.value)


@pytest.mark.parametrize("bad", [None, b"name", 3, ["a"], os.curdir.encode()], ids=repr)
def test_names_that_are_not_str_are_type_errors(bad):
    with pytest.raises(TypeError):
        stopper.Stopper.shared(bad)
    with pytest.raises(TypeError):
        stopper.unlink_shared(bad)


def test_edge_names_that_are_valid(names):
    base = names()
    for full in [(base + "-").ljust(200, "x")] + [base + n for n in ("...", "-", "_", "A.b-C_9")]:
        names(exact=full)
        s = stopper.Stopper.shared(full)
        assert os.path.exists(shm(full)) and not s.is_set()
        stopper.unlink_shared(full)
        assert not os.path.exists(shm(full))


def test_the_limit_of_open_shared_stoppers():
    code = f"""
        import errno, gc, os, stopper
        base = "pytest-{os.getpid()}-limit-"
        held = []
        try:
            for i in range(stopper.MAX_OPEN_SHARED):
                held.append(stopper.Stopper.shared(base + str(i)))
            try:
                stopper.Stopper.shared(base + "over")
            except OSError as e:
                print("over", e.errno == errno.EMFILE, "127" in str(e))
            held.pop()
            gc.collect()
            stopper.Stopper.shared(base + "over")  # a slot freed: fine again
            print("again ok")
        finally:
            for i in range(stopper.MAX_OPEN_SHARED):
                stopper.unlink_shared(base + str(i), missing_ok=True)
            stopper.unlink_shared(base + "over", missing_ok=True)
    """
    rc, out, err = run_python(code)
    assert (rc, err) == (0, "")
    assert out.split("\n")[:2] == ["over True True", "again ok"]
    assert stopper.MAX_OPEN_SHARED == 127


# ---------------------------------------------------------------- escalation
STUBBORN = """
    import signal, sys, time
    signal.signal(signal.SIGTERM, lambda *a: print("got SIGTERM, ignoring it", flush=True))
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
"""

POLITE = """
    import time
    print("ready", flush=True)
    time.sleep(30)
"""


def test_polite_child_ends_by_sigterm():
    s = stopper.Stopper()
    p = start_python(POLITE)
    assert read_line(p) == "ready"
    s.watch_process(p, grace=5)
    time.sleep(0.05)
    assert p.poll() is None  # nothing before the stop
    t0 = time.monotonic()
    s.stop()
    rc, _, _ = finish(p, 5)
    assert rc == -signal.SIGTERM
    assert time.monotonic() - t0 < 4  # well before the grace


@pytest.mark.parametrize("grace", [0.3, 0.8])
def test_stubborn_child_is_killed_after_the_grace_and_not_before(grace):
    s = stopper.Stopper()
    p = start_python(STUBBORN)
    assert read_line(p) == "ready"
    s.watch_process(p.pid, grace=grace)
    t0 = time.monotonic()
    s.stop()
    assert read_line(p) == "got SIGTERM, ignoring it"  # SIGTERM came first
    rc = p.wait(grace + 10)
    dt = time.monotonic() - t0
    assert rc == -signal.SIGKILL
    assert grace - 0.01 <= dt < grace + 5, dt
    p.communicate()


def test_no_grace_means_never_killed():
    s = stopper.Stopper()
    p = start_python(STUBBORN)
    try:
        assert read_line(p) == "ready"
        s.watch_process(p, grace=None)
        s.stop()
        assert read_line(p) == "got SIGTERM, ignoring it"
        time.sleep(0.5)
        assert p.poll() is None
    finally:
        p.kill()
        p.communicate()


def _stubborn_target(ready):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ready.set()
    while True:
        time.sleep(0.05)


def _polite_target(ready):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # whatever the test process inherited
    ready.set()
    time.sleep(30)


def test_watch_a_multiprocessing_process():
    for target, grace, want in ((_polite_target, 5, -signal.SIGTERM), (_stubborn_target, 0.3, -signal.SIGKILL)):
        s = stopper.Stopper()
        ready = FORK.Event()
        p = FORK.Process(target=target, args=(ready,), daemon=True)
        p.start()
        try:
            assert ready.wait(10)
            s.watch_process(p, grace=grace)
            t0 = time.monotonic()
            s.stop()
            p.join(10)  # the process is not reaped by the library: join still works
            assert p.exitcode == want
            if want == -signal.SIGKILL:
                assert time.monotonic() - t0 >= grace - 0.01
        finally:
            if p.is_alive():
                p.kill()
                p.join()


def test_watch_process_when_already_stopped_starts_at_once():
    s = stopper.Stopper()
    s.stop()
    p = start_python(STUBBORN)
    assert read_line(p) == "ready"
    t0 = time.monotonic()
    assert s.watch_process(p, grace=0.3) is None
    assert read_line(p) == "got SIGTERM, ignoring it"
    assert p.wait(10) == -signal.SIGKILL
    assert time.monotonic() - t0 >= 0.29
    p.communicate()


def test_several_watches_on_one_stopper():
    s = stopper.Stopper()
    ps = [start_python(POLITE) for _ in range(3)]
    for p in ps:
        assert read_line(p) == "ready"
        s.watch_process(p, grace=5)
    s.stop()
    assert [finish(p, 5)[0] for p in ps] == [-signal.SIGTERM] * 3


def test_a_stop_in_another_process_escalates_here(names):
    # The watch is this process's; the stop comes from another process through the shared
    # stopper: this process's own watcher runs the escalation.
    name = names()
    s = stopper.Stopper.shared(name)
    victim = start_python(STUBBORN)
    assert read_line(victim) == "ready"
    s.watch_process(victim, grace=0.3)
    rc, out, err = run_python(f"import stopper; stopper.Stopper.shared({name!r}).stop(6)")
    assert (rc, err) == (0, "")
    assert read_line(victim) == "got SIGTERM, ignoring it"
    assert victim.wait(10) == -signal.SIGKILL
    assert s.reason == 6
    victim.communicate()


def test_watching_an_ended_process_is_not_an_error():
    s = stopper.Stopper()
    # reaped already (returncode known): nothing is opened, nothing is signalled
    p = subprocess.Popen([PY, "-c", "pass"])
    p.wait(10)
    s.watch_process(p, grace=0)
    # ended but not reaped (a zombie): the pidfd sees it has exited
    z = subprocess.Popen([PY, "-c", "pass"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{z.pid}/stat") as f:
            if f.read().split(") ")[1].startswith("Z"):
                break
        time.sleep(0.01)
    s.watch_process(z.pid, grace=0)
    # a joined multiprocessing.Process
    mp = FORK.Process(target=int)
    mp.start()
    mp.join(10)
    s.watch_process(mp)
    s.stop()
    assert z.wait(10) == 0  # the zombie's exit status is still its parent's to collect
    assert mp.exitcode == 0


def test_watch_process_bad_arguments():
    s = stopper.Stopper()
    for bad in ("123", 1.5, True, None, object(), [1]):
        with pytest.raises(TypeError):
            s.watch_process(bad)
    for bad in (0, -1, -os.getpid(), 2**31, 2**70):
        with pytest.raises(ValueError):
            s.watch_process(bad)
    with pytest.raises(ValueError, match="not been started"):
        s.watch_process(FORK.Process(target=int))
    p = start_python(POLITE)
    try:
        assert read_line(p) == "ready"
        for grace in (-1, float("nan")):
            with pytest.raises(ValueError):
                s.watch_process(p, grace=grace)
        for grace in ("1", True):
            with pytest.raises(TypeError):
                s.watch_process(p, grace=grace)
        s.stop()  # none of the refused calls registered a watch
        time.sleep(0.3)
        assert p.poll() is None
    finally:
        p.kill()
        p.communicate()


# ---------------------------------------------------------------- stop on a signal
CAUGHT = textwrap.dedent(
    """
    def caught(sig):
        with open("/proc/self/status") as f:
            mask = next(int(l.split()[1], 16) for l in f if l.startswith("SigCgt:"))
        return bool(mask >> (sig - 1) & 1)
    """
)


def run_caught(code):
    """run_python with ``caught(sig)``: whether the kernel says the process catches ``sig``
    (SigCgt), since :func:`signal.getsignal` only knows what Python itself set."""
    return run_python(RESET_SIGNALS + CAUGHT + textwrap.dedent(code))


def test_stop_on_signal_sigterm_sent_to_itself():
    rc, out, err = run_clean(
        """
        import os, signal, threading, stopper
        s = stopper.Stopper()
        ran = threading.Event()
        got = []
        def cb(reason):
            got.append((reason, threading.current_thread() is threading.main_thread()))
            ran.set()
        s.on_stop(cb)
        s.stop_on_signal(signal.SIGTERM)
        # installed below Python: CPython still reports the disposition it last set
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        os.kill(os.getpid(), signal.SIGTERM)
        assert s.wait(10)
        assert ran.wait(10)
        assert s.reason == stopper.REASON_SIGNAL == 3
        assert got == [(3, False)], got  # the stop ran on the library's service thread
        s.stop_on_signal(signal.SIGTERM)  # already stopped: nothing to do
        print("ok")
        """
    )
    assert (rc, out, err) == (0, "ok\n", "")


def test_stop_on_signal_from_another_process_while_blocked_in_a_wait():
    p = start_python(
        """
        import signal, time, stopper
        s = stopper.Stopper()
        s.stop_on_signal(signal.SIGTERM)
        s.stop_on_signal(signal.SIGTERM)  # twice: fine
        print("ready", flush=True)
        t0 = time.monotonic()
        print("woke", s.wait(20), s.reason, flush=True)
        """
    )
    assert read_line(p) == "ready"
    time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    assert read_line(p) == "woke True 3"
    rc, _, err = finish(p)
    assert (rc, err) == (0, "")


def test_stop_on_signal_several_stoppers_one_signal_and_a_shared_one(names):
    name = names()
    w = start_python(WAITER, name)
    assert read_line(w) == "ready False"
    p = start_python(
        f"""
        import os, signal, stopper
        a, b = stopper.Stopper(), stopper.Stopper()
        sh = stopper.Stopper.shared({name!r})
        for s in (a, b, sh):
            s.stop_on_signal(signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR1)
        print(all(s.wait(10) for s in (a, b, sh)), [s.reason for s in (a, b, sh)], flush=True)
        """
    )
    assert read_line(p) == "True [3, 3, 3]"
    # the signal in one process stopped the shared stopper for the other one too
    assert read_line(w).split()[:3] == ["woke", "True", "3"]
    assert finish(p)[::2] == (0, "") and finish(w)[::2] == (0, "")


def test_sigint_is_refused_until_handed_over():
    rc, out, err = run_clean(
        """
        import os, signal, stopper
        s = stopper.Stopper()
        try:
            s.stop_on_signal(signal.SIGINT)
        except ValueError as e:
            print("refused:", "KeyboardInterrupt" in str(e), "SIG_DFL" in str(e))
        try:  # refused, Python's handler stayed in place
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(100):
                s.wait(0.01)
            print("no KeyboardInterrupt")
        except KeyboardInterrupt:
            print("KeyboardInterrupt")
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        s.stop_on_signal(signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        print(s.wait(10), s.reason)
        """
    )
    assert (rc, out.split("\n")[:3], err) == (0, ["refused: True True", "KeyboardInterrupt", "True 3"], "")


def test_signals_with_a_handler_or_ignored_are_refused():
    rc, out, err = run_caught(
        """
        import faulthandler, os, signal, stopper
        s = stopper.Stopper()
        got = []
        signal.signal(signal.SIGUSR1, lambda *a: got.append("python handler ran"))
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        faulthandler.register(signal.SIGHUP, file=open(os.devnull, "w"))  # a C-level handler
        for sig, word in ((signal.SIGUSR1, "Python handler"), (signal.SIGUSR2, "SIG_IGN"), (signal.SIGHUP, "outside Python")):
            try:
                s.stop_on_signal(sig)
                print("accepted", sig)
            except ValueError as e:
                print(word in str(e))
        # the refused signals kept their handlers
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGHUP)
        print(got == ["python handler ran"], caught(signal.SIGUSR2), s.is_set())
        """
    )
    assert (rc, out.split(), err) == (0, ["True", "True", "True", "True", "False", "False"], "")


def test_stop_on_signal_keeps_the_stopper_and_its_callbacks_alive():
    rc, out, err = run_clean(
        """
        import gc, os, signal, threading, stopper
        ran = threading.Event()
        s = stopper.Stopper()
        s.on_stop(lambda r: ran.set())
        s.stop_on_signal(signal.SIGHUP)
        del s
        gc.collect()
        os.kill(os.getpid(), signal.SIGHUP)
        print(ran.wait(10))
        """
    )
    assert (rc, out, err) == (0, "True\n", "")


EXIT_DURING_SIGNAL_STOP = """
    import os, signal, threading, stopper
    started = threading.Event()
    def busy(reason):  # on the service thread; each ctypes call releases and retakes the GIL
        started.set()
        for _ in range(2000):
            stopper.Stopper().reason
    s = stopper.Stopper()
    s.on_stop(busy)
    s.stop_on_signal(signal.SIGUSR1)
    os.kill(os.getpid(), signal.SIGUSR1)
    started.wait(10)
    print("exiting")  # while busy() still runs: the exit handler waits for it
"""


def test_interpreter_exit_while_a_signal_stop_runs_python_callbacks():
    # Repeated: the callback racing with finalization used to abort the process now and then.
    for _ in range(6):
        rc, out, err = run_clean(EXIT_DURING_SIGNAL_STOP)
        assert (rc, out, err) == (0, "exiting\n", "")


def test_stop_on_signal_bad_arguments():
    s = stopper.Stopper()
    for bad in ("15", 15.0, True, None):
        with pytest.raises(TypeError):
            s.stop_on_signal(bad)
    for bad in (0, -1, 64, 1000, signal.SIGKILL, signal.SIGSTOP, signal.SIGSEGV, signal.SIGFPE, signal.SIGABRT):
        with pytest.raises(ValueError):
            s.stop_on_signal(bad)
    # Already stopped: nothing to do, no handler installed.  What the kernel says is caught
    # (SigCgt), since signal.getsignal only knows what Python itself set.
    rc, out, err = run_caught(
        """
        import signal, stopper
        s = stopper.Stopper(); s.stop()
        s.stop_on_signal(signal.SIGUSR2)
        t = stopper.Stopper()
        t.stop_on_signal(signal.SIGHUP)
        print(caught(signal.SIGUSR2), caught(signal.SIGHUP))
        """
    )
    assert (rc, out, err) == (0, "False True\n", "")


# ---------------------------------------------------------------- fork children
def _fork_child_callback(name, q):
    s = stopper.Stopper.shared(name)
    ran = threading.Event()
    s.on_stop(lambda r: ran.set())
    q.put("ready")
    t0 = time.monotonic()
    which = stopper.wait_any([s], 2)
    fast = time.monotonic() - t0 < 1.5  # the stop comes at once; the time-out is 2 s
    q.put((which, fast, ran.wait(1)))


def test_forked_child_runs_its_callbacks_when_the_parent_had_shared_stoppers_open(names):
    held = stopper.Stopper.shared(names("held"))  # the parent's watcher thread is running
    name = names()
    q = FORK.Queue()
    p = FORK.Process(target=_fork_child_callback, args=(name, q), daemon=True)
    p.start()
    try:
        assert q.get(timeout=15) == "ready"
        stopper.Stopper.shared(name).stop()
        assert q.get(timeout=15) == (0, True, True)
    finally:
        p.join(10)
        del held
