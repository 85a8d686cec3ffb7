"""``threading`` and ``queue`` primitives whose blocking calls are checkpoints.

``Lock``, ``RLock``, ``Condition``, ``Semaphore``, ``BoundedSemaphore``, ``Event``, ``Barrier``,
``Queue``, ``LifoQueue``, ``PriorityQueue``, ``SimpleQueue`` and ``sleep`` take the same
arguments, return the same values and raise the same exceptions as their ``threading`` /
``queue`` / ``time`` namesakes, so existing code runs unchanged.  The difference: in a thread
inside an interruptible scope (``Stopper.interruptible()``, ``StoppableThread(interrupt=...)``)
a call that has to wait ends with ``StopRequested`` as soon as the scope stops (or at once if
it already has).  Everywhere else they behave exactly like the originals.

Rules (``bindings/python/README.md``, "stopper.sync", says the same for users):

* Only a call that has to wait is a checkpoint: one that can complete at once (a free lock, a
  set event, a queue with an item) completes, even in a stopped scope.
* A call ended by ``StopRequested`` did not do its work: no lock or semaphore unit held, no
  item taken or put, no notification consumed (one that was already meant for the stopped
  waiter is passed to the next waiter).
* ``Condition.wait`` re-acquires its lock before ``StopRequested`` leaves it, as it does for
  every exception, so ``with cond:`` releases it normally.
* A ``Barrier`` party that is stopped while waiting breaks the barrier (as a time-out does): the
  others get ``BrokenBarrierError`` instead of waiting for a party that has left.
"""

from __future__ import annotations

import collections
import queue as _queue
import threading as _threading
import time as _time
import types
import warnings
from typing import Any, Callable, Optional

from ._sync_lock import Lock, RLock

from ._delivery import sleep

Empty = _queue.Empty
Full = _queue.Full
BrokenBarrierError = _threading.BrokenBarrierError

Lock.__module__ = RLock.__module__ = __name__

__all__ = [
    "Lock",
    "RLock",
    "Condition",
    "Semaphore",
    "BoundedSemaphore",
    "Event",
    "Barrier",
    "BrokenBarrierError",
    "Queue",
    "LifoQueue",
    "PriorityQueue",
    "SimpleQueue",
    "Empty",
    "Full",
    "sleep",
]

if hasattr(_queue, "ShutDown"):  # Python 3.13+
    ShutDown = _queue.ShutDown
    __all__.append("ShutDown")

_time_now = _time.monotonic


def _name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


# ---------------------------------------------------------------- Condition
class Condition:
    """``threading.Condition``; ``wait`` is a checkpoint (it re-acquires the lock before
    raising ``StopRequested``, and hands on a notification that was meant for it)."""

    def __init__(self, lock: Any = None) -> None:
        if lock is None:
            lock = RLock()
        self._lock = lock
        self.acquire = lock.acquire
        self.release = lock.release
        # the lock's own save/restore/ownership test when it has them (RLock, our Lock)
        for name in ("_release_save", "_acquire_restore", "_is_owned"):
            if hasattr(lock, name):
                setattr(self, name, getattr(lock, name))
        self._waiters: "collections.deque[Lock]" = collections.deque()

    def _at_fork_reinit(self) -> None:
        self._lock._at_fork_reinit()
        self._waiters.clear()

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *args: Any) -> Any:
        return self._lock.__exit__(*args)

    def __repr__(self) -> str:
        return f"<Condition({self._lock}, {len(self._waiters)})>"

    def _release_save(self) -> Any:
        self._lock.release()

    def _acquire_restore(self, state: Any) -> None:
        self._lock.acquire()

    def _is_owned(self) -> bool:
        if self._lock.acquire(False):
            self._lock.release()
            return False
        return True

    def wait(self, timeout: Optional[float] = None) -> bool:
        """As ``threading.Condition.wait``: True unless it timed out."""
        if not self._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        waiter = Lock()
        waiter.acquire()
        self._waiters.append(waiter)
        saved = self._release_save()
        try:
            if timeout is None:
                gotit = waiter.acquire()
            elif timeout > 0:
                gotit = waiter.acquire(True, timeout)
            else:
                gotit = waiter.acquire(False)
        except BaseException:  # stopped (or interrupted otherwise)
            self._acquire_restore(saved)
            _leave(self, waiter, pass_on=True)
            raise
        self._acquire_restore(saved)
        if not gotit:
            _leave(self, waiter, pass_on=False)
        return gotit

    def wait_for(self, predicate: Callable[[], Any], timeout: Optional[float] = None) -> Any:
        """As ``threading.Condition.wait_for``."""
        endtime = None
        waittime = timeout
        result = predicate()
        while not result:
            if waittime is not None:
                if endtime is None:
                    endtime = _time_now() + waittime
                else:
                    waittime = endtime - _time_now()
                    if waittime <= 0:
                        break
            self.wait(waittime)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """As ``threading.Condition.notify``: wakes up to ``n`` waiters."""
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        waiters = self._waiters
        while waiters and n > 0:
            waiter = waiters[0]
            try:
                waiter.release()
            except RuntimeError:
                pass  # its waiter already left (timed out) and released it
            else:
                n -= 1
            try:
                waiters.remove(waiter)
            except ValueError:
                pass

    def notify_all(self) -> None:
        self.notify(len(self._waiters))

    def notifyAll(self) -> None:
        warnings.warn("notifyAll() is deprecated, use notify_all() instead", DeprecationWarning, stacklevel=2)
        self.notify_all()


def _leave(cond: Any, waiter: Lock, pass_on: bool) -> None:
    """A waiter leaves ``cond`` without its notification; with ``pass_on``, one that notify()
    had already chosen goes to the next waiter (called holding the lock).  A function, not a
    method: the patched ``threading.Condition.wait`` runs :meth:`Condition.wait` on
    ``threading.Condition`` objects, which have the same fields."""
    try:
        cond._waiters.remove(waiter)
    except ValueError:
        if pass_on:
            cond.notify()


# ---------------------------------------------------------------- Semaphore
class Semaphore:
    """``threading.Semaphore``; a blocking ``acquire`` is a checkpoint."""

    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        self._cond = Condition(Lock())
        self._value = value

    def __repr__(self) -> str:
        return f"<{_name(self)} at {id(self):#x}: value={self._value}>"

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        if not blocking and timeout is not None:
            raise ValueError("can't specify timeout for non-blocking acquire")
        rc = False
        endtime = None
        with self._cond:
            while self._value == 0:
                if not blocking:
                    break
                if timeout is not None:
                    if endtime is None:
                        endtime = _time_now() + timeout
                    else:
                        timeout = endtime - _time_now()
                        if timeout <= 0:
                            break
                self._cond.wait(timeout)
            else:
                self._value -= 1
                rc = True
        return rc

    __enter__ = acquire

    def release(self, n: int = 1) -> None:
        if n < 1:
            raise ValueError("n must be one or more")
        with self._cond:
            self._value += n
            self._cond.notify(n)

    def __exit__(self, t: Any, v: Any, tb: Any) -> None:
        self.release()

    def _at_fork_reinit(self) -> None:
        self._cond._at_fork_reinit()


class BoundedSemaphore(Semaphore):
    """``threading.BoundedSemaphore``; a blocking ``acquire`` is a checkpoint."""

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self._initial_value = value

    def __repr__(self) -> str:
        return f"<{_name(self)} at {id(self):#x}: value={self._value}/{self._initial_value}>"

    def release(self, n: int = 1) -> None:
        if n < 1:
            raise ValueError("n must be one or more")
        with self._cond:
            if self._value + n > self._initial_value:
                raise ValueError("Semaphore released too many times")
            self._value += n
            self._cond.notify(n)


# ---------------------------------------------------------------- Event
class Event:
    """``threading.Event``; ``wait`` for an unset event is a checkpoint."""

    def __init__(self) -> None:
        self._cond = Condition(Lock())
        self._flag = False

    def __repr__(self) -> str:
        return f"<{_name(self)} at {id(self):#x}: {'set' if self._flag else 'unset'}>"

    def _at_fork_reinit(self) -> None:
        self._cond._at_fork_reinit()

    def _reset_internal_locks(self) -> None:  # Python 3.8's name for the after-fork reset
        self._cond.__init__(Lock())

    def is_set(self) -> bool:
        return self._flag

    def isSet(self) -> bool:
        warnings.warn("isSet() is deprecated, use is_set() instead", DeprecationWarning, stacklevel=2)
        return self.is_set()

    def set(self) -> None:
        with self._cond:
            self._flag = True
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._flag = False

    def wait(self, timeout: Optional[float] = None) -> bool:
        with self._cond:
            signaled = self._flag
            if not signaled:
                signaled = self._cond.wait(timeout)
            return signaled


# ---------------------------------------------------------------- Barrier
_FILLING, _DRAINING, _RESETTING, _BROKEN = 0, 1, -1, -2


class Barrier:
    """``threading.Barrier``; ``wait`` is a checkpoint.  A party stopped while waiting breaks
    the barrier, as one that times out does."""

    def __init__(self, parties: int, action: Optional[Callable[[], Any]] = None, timeout: Optional[float] = None) -> None:
        if parties < 1:
            raise ValueError("parties must be > 0")
        self._cond = Condition(Lock())
        self._action = action
        self._timeout = timeout
        self._parties = parties
        self._state = _FILLING
        self._count = 0

    def __repr__(self) -> str:
        if self.broken:
            return f"<{_name(self)} at {id(self):#x}: broken>"
        return f"<{_name(self)} at {id(self):#x}: waiters={self.n_waiting}/{self.parties}>"

    def wait(self, timeout: Optional[float] = None) -> int:
        """Waits until ``parties`` threads called it; returns this thread's arrival index."""
        if timeout is None:
            timeout = self._timeout
        with self._cond:
            self._enter()
            index = self._count
            self._count += 1
            try:
                if index + 1 == self._parties:
                    self._release()
                else:
                    self._wait(timeout)
                return index
            finally:
                self._count -= 1
                self._exit()

    def _enter(self) -> None:
        while self._state in (_DRAINING, _RESETTING):
            self._cond.wait()  # the previous cycle is still leaving
        if self._state < 0:
            raise BrokenBarrierError

    def _release(self) -> None:
        try:
            if self._action:
                self._action()
            self._state = _DRAINING
            self._cond.notify_all()
        except BaseException:
            self._break()
            raise

    def _wait(self, timeout: Optional[float]) -> None:
        try:
            arrived = self._cond.wait_for(lambda: self._state != _FILLING, timeout)
        except BaseException:  # stopped (or interrupted otherwise): this party has left
            self._break()
            raise
        if not arrived:
            self._break()
            raise BrokenBarrierError
        if self._state < 0:
            raise BrokenBarrierError

    def _exit(self) -> None:
        if self._count == 0 and self._state in (_RESETTING, _DRAINING):
            self._state = _FILLING
            self._cond.notify_all()

    def reset(self) -> None:
        with self._cond:
            if self._count > 0:
                if self._state in (_FILLING, _BROKEN):
                    self._state = _RESETTING
            else:
                self._state = _FILLING
            self._cond.notify_all()

    def abort(self) -> None:
        with self._cond:
            self._break()

    def _break(self) -> None:
        self._state = _BROKEN
        self._cond.notify_all()

    @property
    def parties(self) -> int:
        return self._parties

    @property
    def n_waiting(self) -> int:
        return self._count if self._state == _FILLING else 0

    @property
    def broken(self) -> bool:
        return self._state == _BROKEN


# ---------------------------------------------------------------- queues
def _stoppable_conditions(q: Any) -> None:
    """Gives a queue.Queue (after its __init__) our lock and conditions: its own logic, with
    every wait a checkpoint."""
    q.mutex = Lock()
    q.not_empty = Condition(q.mutex)
    q.not_full = Condition(q.mutex)
    q.all_tasks_done = Condition(q.mutex)


class Queue(_queue.Queue):
    """``queue.Queue``; a ``get``/``put``/``join`` that has to wait is a checkpoint."""

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        _stoppable_conditions(self)


class LifoQueue(_queue.LifoQueue):
    """``queue.LifoQueue``; a ``get``/``put``/``join`` that has to wait is a checkpoint."""

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        _stoppable_conditions(self)


class PriorityQueue(_queue.PriorityQueue):
    """``queue.PriorityQueue``; a ``get``/``put``/``join`` that has to wait is a checkpoint."""

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        _stoppable_conditions(self)


class SimpleQueue:
    """``queue.SimpleQueue`` (an unbounded FIFO); a ``get`` that has to wait is a checkpoint."""

    def __init__(self) -> None:
        self._queue: "collections.deque[Any]" = collections.deque()
        self._count = Semaphore(0)

    def put(self, item: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """Puts ``item``; never blocks (``block`` and ``timeout`` are accepted and ignored)."""
        self._queue.append(item)
        self._count.release()

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Removes and returns the oldest item; raises ``Empty`` as ``queue.SimpleQueue`` does."""
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        if not self._count.acquire(block, timeout if block else None):
            raise Empty
        return self._queue.popleft()

    def put_nowait(self, item: Any) -> None:
        self.put(item, block=False)

    def get_nowait(self) -> Any:
        return self.get(False)

    def empty(self) -> bool:
        return len(self._queue) == 0

    def qsize(self) -> int:
        return len(self._queue)

    if hasattr(types, "GenericAlias"):  # Python 3.9+: SimpleQueue[int]
        __class_getitem__ = classmethod(types.GenericAlias)
