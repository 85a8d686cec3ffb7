"""The scenarios of shared/RECIPES.md, done with stopper: each stops at once."""

import queue
import socket
import threading
import time

import stopper


def test_recipe1_cookbook_thread():
    class TestThread(stopper.StoppableThread):
        def __init__(self):
            super().__init__()
            self.count = 0

        def run(self):
            while not self.stopped():
                self.count += 1
                self.stopper.wait(1.0)  # the sleep period

    t = TestThread()
    t.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    t.join()
    assert time.monotonic() - t0 < 0.5  # not up to the 1 s period
    assert t.count == 1 and not t.is_alive()


def test_recipe2_check_at_regular_intervals():
    t = stopper.StoppableThread(target=lambda: [stopper.current().wait(1) for _ in iter(lambda: stopper.current().is_set(), True)])
    t.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    t.stop()
    t.join()
    assert time.monotonic() - t0 < 0.5


def test_recipe3_async_raise_into_long_python_call():
    def long_library_call():  # never checks a flag
        x = 0
        while True:
            x = (x * 31 + 7) % 1000003

    out = []

    def run():
        try:
            long_library_call()
        except stopper.StopRequested:
            out.append(time.monotonic())
            raise

    t = stopper.StoppableThread(target=run, interrupt=True)
    t.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    t.join(5)  # no re-send loop
    assert not t.is_alive()
    assert out and out[0] - t0 < 0.5


def test_recipe4_queue_worker_with_channel():
    tasks = stopper.Channel()
    for i in range(5):
        tasks.put(i)
    done = []

    class Worker(stopper.StoppableThread):
        def run(self):
            try:
                while True:
                    item = tasks.get(stopper=self.stopper)
                    if self.stopper.wait(0.1):  # each task takes 0.1 s (the recipe: 1 s)
                        return
                    done.append(item)
            except stopper.StopRequested:
                pass

    w = Worker()
    w.start()
    time.sleep(0.25)  # the recipe stops after 4 of 5 s of work
    t0 = time.monotonic()
    w.join()
    assert time.monotonic() - t0 < 0.5
    assert done == [0, 1]
    assert len(tasks) == 2  # the rest are still queued, nothing lost

    # idle worker: no wake-ups while it waits, wakes at once on stop
    idle = stopper.Channel()
    w2 = stopper.StoppableThread(target=lambda: idle.get(stopper=stopper.current()))
    w2.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    w2.join()
    assert time.monotonic() - t0 < 0.5


def test_socket_reader_with_selectors_and_wait_readable():
    a, b = socket.socketpair()
    got = []

    def reader():
        s = stopper.current()
        while True:
            try:
                if not s.wait_readable(a):
                    continue
            except stopper.StopRequested:
                return
            data = a.recv(100)
            if not data:
                return
            got.append(data)

    t = stopper.StoppableThread(target=reader)
    t.start()
    b.send(b"one")
    time.sleep(0.05)
    b.send(b"two")
    time.sleep(0.05)
    t0 = time.monotonic()
    t.join()
    assert time.monotonic() - t0 < 0.5
    assert b"".join(got) == b"onetwo"
    a.close()
    b.close()


def test_socket_recv_is_not_reached_by_async_exception():
    """The documented limit: an async exception does not reach a thread inside recv();
    only wait_readable (or the fd) wakes it."""
    a, b = socket.socketpair()
    out = {}

    def run():
        try:
            a.recv(10)  # blocks in C
            out["returned"] = time.monotonic()
            while True:
                pass
        except stopper.StopRequested:
            out["raised"] = time.monotonic()

    t = stopper.StoppableThread(target=run, interrupt=True)
    t.start()
    time.sleep(0.05)
    t.stop()
    time.sleep(0.2)
    assert "raised" not in out  # still blocked in recv despite the stop
    b.send(b"x")  # let recv return: the pending StopRequested lands right after
    threading.Thread.join(t, 5)
    assert "raised" in out and not t.is_alive()
    a.close()
    b.close()
