"""The recipes of shared/RECIPES.md, written fresh in their original form (no stopper).

Each class has the same small interface for the demo: start(), request_stop() and a thread
to join.  Durations are shortened (see each recipe) so that the whole demo stays short;
the polling periods that set their stop latency are the recipes' own.
"""

import ctypes
import queue
import socket
import threading
import time


class CookbookThread(threading.Thread):
    """Recipe 1: an Event plus a sleep period; join() sets the event, then joins."""

    def __init__(self, sleep_period=1.0):
        super().__init__(name="CookbookThread")
        self._stopevent = threading.Event()
        self._sleepperiod = sleep_period
        self.count = 0

    def run(self):
        while not self._stopevent.is_set():
            self.count += 1  # one unit of work (the recipe prints a counter)
            self._stopevent.wait(self._sleepperiod)

    def join(self, timeout=None):
        self._stopevent.set()
        super().join(timeout)

    def request_stop(self):
        self._stopevent.set()


class TutorialStoppableThread(threading.Thread):
    """Recipe 2: stop() sets an Event, stopped() reads it; the body sleeps 1 s per turn."""

    def __init__(self):
        super().__init__(name="TutorialStoppableThread")
        self._stop_event = threading.Event()
        self.count = 0

    def stop(self):
        self._stop_event.set()

    def stopped(self):
        return self._stop_event.is_set()

    def run(self):
        while not self.stopped():
            self.count += 1
            time.sleep(1)

    def request_stop(self):
        self.stop()


class ThreadWithExc(threading.Thread):
    """Recipe 3: raise an exception inside the thread from outside, re-sent in a loop
    because a thread busy in a system call (here time.sleep, standing for a long blocking
    call into a library) only sees it when the call returns."""

    class Stop(Exception):
        pass

    def __init__(self):
        super().__init__(name="ThreadWithExc")
        self.count = 0

    def run(self):
        try:
            while True:
                time.sleep(0.5)  # a long call into a library that never checks a flag
                self.count += 1
        except ThreadWithExc.Stop:
            pass

    def raise_exc(self, exc_type):
        n = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.ident), ctypes.py_object(exc_type))
        if n == 0:
            raise ValueError("invalid thread id")
        if n > 1:  # more than one thread state touched: revert
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.ident), None)
            raise SystemError("PyThreadState_SetAsyncExc failed")

    def request_stop(self):
        def resend():
            while self.is_alive():
                try:
                    self.raise_exc(ThreadWithExc.Stop)
                except ValueError:
                    break
                time.sleep(0.1)

        threading.Thread(target=resend, daemon=True).start()


class QueueWorker(threading.Thread):
    """Recipe 4: get(timeout=0.5) in a loop, re-checking the stop flag on queue.Empty.
    Pre-filled with 5 tasks (shortened to 0.25 s each from the recipe's 1 s)."""

    def __init__(self, task_seconds=0.25):
        super().__init__(name="QueueWorker")
        self.tasks = queue.Queue()
        self.stop_event = threading.Event()
        self.done = 0
        for i in range(5):
            self.tasks.put(i)
        self.task_seconds = task_seconds

    def run(self):
        while not self.stop_event.is_set():
            try:
                self.tasks.get(timeout=0.5)
            except queue.Empty:
                continue
            time.sleep(self.task_seconds)  # process the task
            self.done += 1

    def request_stop(self):
        self.stop_event.set()


class PollingSocketReader(threading.Thread):
    """A socket reader with a recv timeout, checking a flag between timeouts (recipe 4's
    "timeouts on blocking calls" applied to a socket)."""

    def __init__(self, sock):
        super().__init__(name="PollingSocketReader")
        self.sock = sock
        self.sock.settimeout(0.5)
        self.stop_event = threading.Event()
        self.received = b""

    def run(self):
        while not self.stop_event.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            if not data:
                break
            self.received += data

    def request_stop(self):
        self.stop_event.set()
