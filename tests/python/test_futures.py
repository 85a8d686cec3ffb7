"""stopper.futures.ThreadPoolExecutor: cancel() of a running task stops it (SPEC "Python: cancel
means stop"), and the executor stays a drop-in for the standard one."""

import concurrent.futures as cf
import glob
import os
import random
import shutil
import subprocess
import sys
import threading
import time

import pytest

import stopper
import stopper.futures as sf

HERE = os.path.dirname(os.path.abspath(__file__))


def test_is_a_standard_executor_and_task_runs_in_its_own_child():
    with sf.ThreadPoolExecutor(2) as ex:
        assert isinstance(ex, cf.ThreadPoolExecutor)
        seen = ex.submit(stopper.current).result()
        assert isinstance(seen, stopper.Stopper)
        assert seen != ex.stopper
        other = ex.submit(stopper.current).result()
        assert other != seen  # one child per task
        assert ex.submit(lambda a, b=0: a + b, 1, b=2).result() == 3
        assert list(ex.map(abs, [-1, -2])) == [1, 2]


def test_cancel_running_task_stops_it_and_future_is_cancelled():
    with sf.ThreadPoolExecutor(2) as ex:
        started = threading.Event()
        ended = []

        def task():
            started.set()
            try:
                stopper.sleep(30)
            finally:
                ended.append(time.monotonic())
            return "not reached"

        f = ex.submit(task)
        assert started.wait(10)
        t0 = time.monotonic()
        assert f.cancel() is True
        assert ended and ended[0] - t0 < 5  # the task had ended when cancel() returned
        assert f.cancelled() and f.done() and not f.running()
        with pytest.raises(cf.CancelledError):
            f.result()
        with pytest.raises(cf.CancelledError):
            f.exception()
        assert f.cancel() is True  # again: still cancelled
        # wait() and as_completed() see it
        done, not_done = cf.wait([f], timeout=5)
        assert f in done and not not_done
        assert list(cf.as_completed([f], timeout=5)) == [f]


def test_cancel_seen_by_a_waiter_already_waiting():
    with sf.ThreadPoolExecutor(2) as ex:
        started = threading.Event()
        f = ex.submit(lambda: (started.set(), stopper.sleep(30)))
        assert started.wait(10)
        got = []
        waiter = threading.Thread(target=lambda: got.append(cf.wait([f], timeout=20)))
        waiter.start()
        time.sleep(0.05)
        called = []
        f.add_done_callback(called.append)
        assert f.cancel()
        waiter.join(20)
        assert got and f in got[0].done
        assert called == [f]


def test_task_that_completes_anyway_keeps_its_result():
    with sf.ThreadPoolExecutor(1) as ex:
        started = threading.Event()

        def stubborn():
            started.set()
            time.sleep(0.2)  # not a checkpoint (no patch()): the stop goes unnoticed
            return 7

        f = ex.submit(stubborn)
        assert started.wait(10)
        assert f.cancel() is False
        assert not f.cancelled() and f.result() == 7


def test_task_that_ignores_stop_and_raises_other_error_keeps_it():
    with sf.ThreadPoolExecutor(1) as ex:
        started = threading.Event()

        def task():
            started.set()
            try:
                stopper.sleep(30)
            except stopper.StopRequested:
                raise KeyError("mine")

        f = ex.submit(task)
        assert started.wait(10)
        assert f.cancel() is False
        assert isinstance(f.exception(), KeyError)


def test_pending_and_finished_futures_behave_as_standard():
    with sf.ThreadPoolExecutor(1) as ex:
        gate = threading.Event()
        first = ex.submit(gate.wait, 10)
        pending = ex.submit(lambda: "never")
        assert pending.cancel() is True and pending.cancelled()
        gate.set()
        assert first.result() is True
        assert first.cancel() is False  # finished
        done = ex.submit(lambda: 1)
        assert done.result() == 1 and done.cancel() is False


def test_cancel_own_future_from_inside_does_not_deadlock():
    with sf.ThreadPoolExecutor(1) as ex:
        box = []
        ready = threading.Event()

        def task():
            ready.wait(10)
            return box[0].cancel()

        f = ex.submit(task)
        box.append(f)
        ready.set()
        assert f.result(timeout=20) is False


def test_executor_stopper_stops_all_running_tasks():
    parent = stopper.Stopper()
    ex = sf.ThreadPoolExecutor(3, stopper=parent)
    started = threading.Barrier(4)

    def task():
        started.wait(10)
        stopper.sleep(30)

    fs = [ex.submit(task) for _ in range(3)]
    started.wait(10)
    t0 = time.monotonic()
    ex.stopper.stop()
    for f in fs:
        assert isinstance(f.exception(timeout=20), stopper.StopRequested)
    assert time.monotonic() - t0 < 10
    assert not parent.is_set()  # the executor's stopper is a child: the caller's is untouched
    ex.shutdown()
    # and the parent's stop reaches a new executor's tasks
    ex2 = sf.ThreadPoolExecutor(1, stopper=parent)
    ok = threading.Event()
    f = ex2.submit(lambda: (ok.set(), stopper.sleep(30)))
    ok.wait(10)
    parent.stop()
    assert isinstance(f.exception(timeout=20), stopper.StopRequested)
    ex2.shutdown()


def test_shutdown_cancel_futures_stops_running_tasks():
    ex = sf.ThreadPoolExecutor(2)
    started = threading.Barrier(3)

    def task():
        started.wait(10)
        stopper.sleep(30)

    running = [ex.submit(task) for _ in range(2)]
    pending = [ex.submit(task) for _ in range(5)]
    started.wait(10)
    t0 = time.monotonic()
    ex.shutdown(wait=True, cancel_futures=True)
    assert time.monotonic() - t0 < 10
    assert all(f.cancelled() for f in running + pending)
    assert all(not t.is_alive() for t in ex._threads)


def test_bad_arguments():
    with pytest.raises(ValueError):
        sf.ThreadPoolExecutor(1, interrupt="sometimes")
    with pytest.raises(TypeError):
        sf.ThreadPoolExecutor(1, stopper=object())
    with pytest.raises(ValueError):
        sf.ThreadPoolExecutor(0)
    ex = sf.ThreadPoolExecutor(1)
    ex.shutdown()
    with pytest.raises(RuntimeError):
        ex.submit(int)


@pytest.mark.filterwarnings("ignore:stopper. on Python 3.13:RuntimeWarning")  # the documented 3.13 caveat
def test_async_mode_stops_a_busy_loop():
    with sf.ThreadPoolExecutor(1, interrupt="async") as ex:
        started = threading.Event()

        def spin():
            started.set()
            while True:
                pass

        f = ex.submit(spin)
        assert started.wait(10)
        assert f.cancel() is True
        assert f.cancelled()


def test_cooperative_mode_task_checks_current():
    with sf.ThreadPoolExecutor(1, interrupt=False) as ex:
        started = threading.Event()

        def task():
            started.set()
            s = stopper.current()
            s.wait(30)
            raise stopper.StopRequested("noticed")

        f = ex.submit(task)
        assert started.wait(10)
        assert f.cancel() is True


def test_race_cancel_against_completion_1000_times():
    """Exactly one outcome per future, and cancel()'s answer matches it: 1000 races."""
    outcomes = {True: 0, False: 0}
    with sf.ThreadPoolExecutor(4) as ex:
        for i in range(1000):
            go = threading.Event()
            delay = random.random() * 0.0005

            def task(i=i):
                go.set()
                t_end = time.perf_counter() + delay
                while time.perf_counter() < t_end:
                    stopper.checkpoint()
                return i

            f = ex.submit(task)
            if i % 2:
                go.wait(10)
            r = f.cancel()
            assert r == f.cancelled()
            assert f.done()
            if r:
                with pytest.raises(cf.CancelledError):
                    f.result(timeout=0)
            else:
                assert f.result(timeout=0) == i
            outcomes[r] += 1
            if i % 2:  # it had started: wait() counts it done (a pending one cancelled is
                done, _ = cf.wait([f], timeout=0)  # only "done" once a worker dequeues it,
                assert f in done  # as in the standard executor)
    assert outcomes[True] > 0 and outcomes[False] > 0, outcomes


# ---------------------------------------------------------------- CPython's own tests
def _interpreters_with_cpython_tests():
    """Interpreters (3.8+) whose standard library ships test.test_concurrent_futures: this
    one, those named in $STOPPER_CPYTHON_TEST_PYTHONS (os.pathsep-separated), and pyenv's."""
    cands = [sys.executable]
    cands += [p for p in os.environ.get("STOPPER_CPYTHON_TEST_PYTHONS", "").split(os.pathsep) if p]
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            root = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            root = ""
        if root:
            cands += sorted(glob.glob(os.path.join(root, "versions", "3.*", "bin", "python3")))
    found = {}
    for py in cands:
        try:
            p = subprocess.run(
                [py, "-c", "import sys, importlib.util as u; "
                 "print('%d.%d' % sys.version_info[:2], u.find_spec('test.test_concurrent_futures') is not None)"],
                capture_output=True, text=True, timeout=20,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        parts = p.stdout.split()
        if p.returncode == 0 and len(parts) == 2 and parts[1] == "True":
            major, minor = map(int, parts[0].split("."))
            if (major, minor) >= (3, 8):
                found.setdefault((major, minor), py)
    return found


@pytest.mark.timeout(400)
def test_cpython_thread_pool_tests_pass_against_our_executor(tmp_path):
    """CPython's own ThreadPool* test classes from test_concurrent_futures, with
    concurrent.futures.ThreadPoolExecutor replaced by ours (the runner checks the swap took).
    Run under the newest and the oldest interpreter found that ship them (the package layout
    of 3.12+ and the single module before), concurrently."""
    found = _interpreters_with_cpython_tests()
    if not found:
        pytest.skip("no Python 3.8+ with test.test_concurrent_futures found (set STOPPER_CPYTHON_TEST_PYTHONS)")
    versions = sorted(found)
    chosen = {versions[0], versions[-1]}
    # The installed package, importable by another interpreter: a directory holding only it.
    pkg_dir = os.path.dirname(os.path.abspath(stopper.__file__))
    os.symlink(pkg_dir, tmp_path / "stopper")
    env = dict(os.environ, PYTHONPATH=str(tmp_path), STOPPER_LIBRARY=stopper.library_path())
    runner = os.path.join(HERE, "cpython_futures", "run_thread_pool_tests.py")
    procs = {
        v: subprocess.Popen([found[v], runner], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for v in sorted(chosen)
    }
    for v, p in procs.items():
        out, _ = p.communicate(timeout=240)
        assert p.returncode == 0, f"Python {v}:\n{out[-6000:]}"
        assert "thread-pool test classes" in out and "\nOK" in out, out[-3000:]
