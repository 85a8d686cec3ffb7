"""The same recipes with stopper: shorter, and a stop lands at once."""

import selectors
import socket

import stopper


class CookbookThread(stopper.StoppableThread):
    """Recipe 1: the stopper is the event; join() already means stop, then join."""

    def __init__(self, sleep_period=1.0):
        super().__init__(name="CookbookThread+stopper")
        self.sleep_period = sleep_period
        self.count = 0

    def run(self):
        while not self.stopped():
            self.count += 1
            self.stopper.wait(self.sleep_period)

    def request_stop(self):
        self.stop()


class TutorialStoppableThread(stopper.StoppableThread):
    """Recipe 2: the 1 s sleep becomes a stopper wait, which wakes on stop()."""

    def __init__(self):
        super().__init__(name="StoppableThread+stopper")
        self.count = 0

    def run(self):
        while not self.stopped():
            self.count += 1
            self.stopper.wait(1)

    def request_stop(self):
        self.stop()


class InterruptedThread(stopper.StoppableThread):
    """Recipe 3: interrupt=True raises StopRequested inside run(); no re-send loop.  The
    long call blocks in a stopper wait (time.sleep cannot be interrupted by anything)."""

    def __init__(self):
        super().__init__(name="ThreadWithExc+stopper", interrupt=True)
        self.count = 0

    def run(self):
        idle = stopper.Stopper()  # never stopped: a plain interruptible sleep
        while True:  # never checks a flag
            idle.wait(0.5)
            self.count += 1

    def request_stop(self):
        self.stop()


class ChannelWorker(stopper.StoppableThread):
    """Recipe 4: Channel.get(stopper=...) ends the moment the worker is stopped; the task's
    own waiting takes the stopper too."""

    def __init__(self, task_seconds=0.25):
        super().__init__(name="QueueWorker+stopper")
        self.tasks = stopper.Channel()
        self.done = 0
        for i in range(5):
            self.tasks.put(i)
        self.task_seconds = task_seconds

    def run(self):
        try:
            while True:
                self.tasks.get(stopper=self.stopper)
                if self.stopper.wait(self.task_seconds):  # process the task
                    return
                self.done += 1
        except stopper.StopRequested:
            pass

    def request_stop(self):
        self.stop()


class SelectorSocketReader(stopper.StoppableThread):
    """A socket reader that waits on the socket and on the stopper's descriptor together."""

    def __init__(self, sock):
        super().__init__(name="SocketReader+stopper")
        self.sock = sock
        self.received = b""

    def run(self):
        with selectors.DefaultSelector() as sel:
            sel.register(self.sock, selectors.EVENT_READ, "data")
            sel.register(self.stopper.fileno(), selectors.EVENT_READ, "stop")
            while True:
                for key, _ in sel.select():
                    if key.data == "stop":
                        return
                    data = self.sock.recv(4096)
                    if not data:
                        return
                    self.received += data

    def request_stop(self):
        self.stop()
