"""stopper.subprocess.run: a stop ends the child's whole process group (SIGTERM, SIGKILL after
grace or once the leader ended), reaps it, raises StopRequested; never a reused id."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import stopper
import stopper.subprocess as ssp

# A tree of depth 3: the leader (sh) -> an sh that ignores SIGTERM -> sleep (which inherits the
# ignored SIGTERM), and a plain sleep.  The leader writes its pid first, every process of the
# tree its pid to {pidfile}.all, and the stubborn sh says "ready" once it ignores SIGTERM.
TREE = (
    "echo $$ > {pidfile}; echo $$ >> {pidfile}.all; "
    "sh -c 'trap \"\" TERM; sleep 300 & echo $! >> {pidfile}.all; echo $$ > {pidfile}.ready; wait' & "
    "echo $! >> {pidfile}.all; "
    "sleep 300 & echo $! >> {pidfile}.all; wait"
)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _wait_tree_started(pidfile, limit=10.0):
    give_up = time.monotonic() + limit
    while time.monotonic() < give_up:
        try:
            with open(f"{pidfile}.all") as f:
                if len(f.read().split()) == 4:
                    return
        except OSError:
            pass
        time.sleep(0.005)
    raise AssertionError("the tree did not start")


def _tree_left(pidfile, limit=5.0):
    """The processes of the tree still alive (not zombies), watched for up to ``limit`` s."""
    with open(f"{pidfile}.all") as f:
        pids = [int(x) for x in f.read().split()]
    assert len(pids) == 4, pids
    give_up = time.monotonic() + limit
    while True:  # test-side observation of /proc (the code under test does not poll)
        left = [p for p in pids if _alive(p)]
        if not left or time.monotonic() > give_up:
            return left
        time.sleep(0.01)


def _group_members(pgid):
    """pids of live (non-zombie) processes whose process group is ``pgid``, from /proc."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            out.append(int(name))
    return out


def _wait_group_gone(pgid, limit=5.0):
    give_up = time.monotonic() + limit
    while True:  # test-side observation of /proc (the code under test does not poll)
        left = _group_members(pgid)
        if not left or time.monotonic() > give_up:
            return left
        time.sleep(0.01)


def _read_pid(path, limit=10.0):
    give_up = time.monotonic() + limit
    while time.monotonic() < give_up:
        try:
            with open(path) as f:
                text = f.read().strip()
            if text:
                return int(text)
        except OSError:
            pass
        time.sleep(0.005)
    raise AssertionError("the leader never wrote its pid")


def _stop_when_group_full(s, pidfile):
    """Stops ``s`` once the stubborn part of the tree ignores SIGTERM (it says so in a file)."""
    def go():
        _read_pid(f"{pidfile}.ready")
        _wait_tree_started(pidfile)
        s.stop()

    t = threading.Thread(target=go)
    t.start()
    return t


@pytest.mark.parametrize("capture", [False, True])
def test_depth3_tree_with_sigterm_ignoring_child_leaves_nothing(tmp_path, capture):
    for i in range(3):
        pidfile = tmp_path / f"leader{i}"
        s = stopper.Stopper()
        t = _stop_when_group_full(s, pidfile)
        t0 = time.monotonic()
        with pytest.raises(stopper.StopRequested):
            ssp.run(["sh", "-c", TREE.format(pidfile=pidfile)], stopper=s, grace=0.5, capture_output=capture)
        took = time.monotonic() - t0
        t.join()
        pgid = _read_pid(pidfile)
        assert _wait_group_gone(pgid) == []
        assert _tree_left(pidfile) == []
        if not capture:
            # the leader ended on SIGTERM: what it left (the stubborn one) is killed at once
            assert took < 5
        else:
            # the stubborn one holds the pipes: it is killed when the grace has passed
            assert took >= 0.45


def test_stubborn_leader_is_killed_after_grace():
    s = stopper.Stopper()
    threading.Timer(0.1, s.stop).start()
    t0 = time.monotonic()
    with pytest.raises(stopper.StopRequested):
        ssp.run(["sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"], stopper=s, grace=0.4)
    took = time.monotonic() - t0
    assert 0.45 <= took < 5


def test_grace_zero_kills_at_once():
    s = stopper.Stopper()
    threading.Timer(0.1, s.stop).start()
    t0 = time.monotonic()
    with pytest.raises(stopper.StopRequested):
        ssp.run(["sh", "-c", "trap '' TERM; sleep 300"], stopper=s, grace=0)
    assert time.monotonic() - t0 < 5


def test_interruptible_scope_of_the_thread_stops_it(tmp_path):
    s = stopper.Stopper()
    threading.Timer(0.1, s.stop).start()
    with pytest.raises(stopper.StopRequested):
        with s.interruptible("checkpoint"):
            ssp.run(["sleep", "300"])


def test_already_stopped_starts_nothing(tmp_path):
    s = stopper.Stopper()
    s.stop()
    marker = tmp_path / "ran"
    with pytest.raises(stopper.StopRequested):
        ssp.run(["touch", str(marker)], stopper=s)
    assert not marker.exists()


def test_behaves_as_subprocess_run_without_a_stop():
    s = stopper.Stopper()
    r = ssp.run(["sh", "-c", "cat; echo err >&2; exit 3"], stopper=s, input=b"in", capture_output=True)
    assert isinstance(r, subprocess.CompletedProcess)
    assert (r.returncode, r.stdout, r.stderr) == (3, b"in", b"err\n")
    with pytest.raises(subprocess.CalledProcessError) as info:
        ssp.run(["sh", "-c", "exit 2"], check=True)
    assert info.value.returncode == 2
    r = ssp.run(["echo", "x"], stdout=subprocess.PIPE, text=True)
    assert r.stdout == "x\n"
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        ssp.run(["sh", "-c", "sleep 300 & sleep 300"], timeout=0.2)
    assert time.monotonic() - t0 < 10
    with pytest.raises(ValueError):
        ssp.run(["true"], input=b"", stdin=subprocess.PIPE)
    assert not s.is_set()


def test_timeout_kills_the_whole_group(tmp_path):
    pidfile = tmp_path / "leader"
    with pytest.raises(subprocess.TimeoutExpired):
        ssp.run(["sh", "-c", TREE.format(pidfile=pidfile)], timeout=1.0)
    assert _wait_group_gone(_read_pid(pidfile)) == []
    assert _tree_left(pidfile) == []


def test_missing_program_raises_file_not_found_and_leaves_nothing():
    with pytest.raises(FileNotFoundError):
        ssp.run(["/nonexistent/program-of-nobody"], stopper=stopper.Stopper())
    with pytest.raises(ChildProcessError):  # no child of ours is left, reaped or not
        os.waitpid(-1, os.WNOHANG)


def test_bad_arguments():
    with pytest.raises(ValueError):
        ssp.run(["true"], grace=-1)
    with pytest.raises(ValueError):
        ssp.run(["true"], grace=float("nan"))
    with pytest.raises(TypeError):
        ssp.run(["true"], grace="5")
    with pytest.raises(TypeError):
        ssp.run(["true"], stopper=42)
    with pytest.raises(ValueError):
        ssp.run(["true"], start_new_session=False)


def test_a_reused_pid_and_group_id_is_never_signalled(tmp_path):
    """The signal path holds the leader by its pidfd: once the leader is reaped and its group
    empty, a new process reusing the number (and leading a group of that number) is never
    hit, where os.killpg(number) would hit it.  Uses ns_last_pid to force the reuse."""
    a = subprocess.Popen(["true"], start_new_session=True)
    fd = ssp._pidfd_open(a.pid)
    try:
        a.wait()
        try:
            with open("/proc/sys/kernel/ns_last_pid", "w") as f:
                f.write(str(a.pid - 1))
        except OSError as e:
            pytest.skip(f"cannot force a pid reuse here (ns_last_pid: {e})")
        b = subprocess.Popen(["sleep", "300"], start_new_session=True)
        try:
            if b.pid != a.pid:
                pytest.skip("another process took the pid first")
            assert os.getpgid(b.pid) == a.pid  # same number, another group
            assert ssp._signal_group(fd, signal.SIGKILL) is False  # nothing of ours left
            assert b.poll() is None  # the newcomer was not hit
        finally:
            b.kill()
            b.wait()
    finally:
        os.close(fd)


def test_watch_process_group_ends_the_whole_tree(tmp_path):
    pidfile = tmp_path / "leader"
    p = subprocess.Popen(["sh", "-c", TREE.format(pidfile=pidfile)], start_new_session=True)
    try:
        s = stopper.Stopper()
        s.watch_process(p, grace=0.3, group=True)
        _read_pid(f"{pidfile}.ready")
        _wait_tree_started(pidfile)
        s.stop()
        assert p.wait(10) is not None
        assert _wait_group_gone(p.pid) == []  # the SIGTERM-ignoring member too, after grace
        assert _tree_left(pidfile) == []
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_watch_process_group_refuses_a_non_leader():
    p = subprocess.Popen(["sleep", "30"])  # in our own group: it leads none
    try:
        with pytest.raises(ValueError):
            stopper.Stopper().watch_process(p, group=True)
    finally:
        p.kill()
        p.wait()
