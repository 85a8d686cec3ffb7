"""Interpreter exit with deadlines, hooks and callbacks still pending: exit code 0 and
nothing on stderr (run in subprocesses)."""

import pytest

from conftest import run_python


def check_clean(code, **kw):
    rc, out, err = run_python(code, **kw)
    assert err == "", err
    assert rc == 0, (rc, out)
    return out


def test_exit_with_pending_deadlines_and_callbacks():
    out = check_clean("""
        import stopper
        keep = []
        for i in range(200):
            s = stopper.Stopper()
            s.on_stop(lambda r: print("callback ran", r))
            s.stop_after(0.5 + i * 0.001)
            keep.append(s)
        for i in range(200):  # dropped ones stay armed too
            s = stopper.Stopper(); s.on_stop(print); s.stop_after(0.3)
        print("bye")
    """)
    assert out.strip() == "bye"


def test_exit_with_daemon_interruptible_threads_and_deadlines():
    out = check_clean("""
        import stopper, time
        def busy():
            while True:
                pass
        def waiting():
            stopper.Stopper().wait()
        ts = []
        for i in range(4):
            t = stopper.StoppableThread(target=busy if i % 2 else waiting, interrupt=True, daemon=True)
            t.start()
            t.stopper.stop_after(0.2)  # would fire after exit began
            ts.append(t)
        with stopper.timeout(10):
            time.sleep(0.01)
        print("bye")
    """)
    assert out.strip() == "bye"


@pytest.mark.parametrize("delay_ms", [0, 1, 2, 5])
def test_exit_while_deadlines_fire(delay_ms):
    """Deadlines due around the moment the interpreter exits, with hooks and callbacks."""
    check_clean(f"""
        import stopper, threading, time
        def busy():
            while True:
                time.sleep(0.0005)
        for i in range(8):
            t = stopper.StoppableThread(target=busy, interrupt=True, daemon=True)
            t.start()
            t.stopper.on_stop(lambda r: sum(range(1000)))
            t.stopper.stop_after({delay_ms} / 1000 + i * 0.0005)
        p = stopper.Stopper()
        for i in range(50):
            c = p.child()
            c.on_stop(lambda r: None)
        p.stop_after({delay_ms} / 1000)
        time.sleep({delay_ms} / 1000)
    """)


def test_exit_with_non_daemon_stoppable_thread_joined_by_stop():
    out = check_clean("""
        import stopper, atexit
        t = stopper.StoppableThread(target=lambda: stopper.current().wait())
        t.start()
        t.stopper.stop_after(0.05)   # the non-daemon thread ends by deadline; exit waits for it
        print("bye")
    """)
    assert out.strip() == "bye"


def test_exit_from_inside_a_scope_and_callback_raising():
    check_clean("""
        import stopper, sys, threading
        threading.excepthook = lambda args: None
        s = stopper.Stopper()
        s.on_stop(lambda r: 1/0)
        s.stop_after(0.001)
        c = stopper.Channel()
        c.put(object())
        with s:
            try:
                with stopper.timeout(5):  # inside s: stopped with s (maybe already at entry)
                    sys.exit(0)
            except stopper.StopRequested:
                sys.exit(0)
    """)


def test_objects_used_after_exit_release_fail_cleanly():
    """A later atexit handler (registered before the import) touching a released stopper
    gets an exception or a stale answer, never a crash."""
    rc, out, err = run_python("""
        import atexit
        box = []
        def late():
            s = box[0]
            print("is_set", s.is_set())
            try:
                s.wait(0)
            except Exception as e:
                print("wait", type(e).__name__)
        atexit.register(late)
        import stopper
        box.append(stopper.Stopper())
        box[0].stop()
    """)
    assert rc == 0, err
    assert "is_set True" in out
