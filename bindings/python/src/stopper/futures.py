"""A ``concurrent.futures.ThreadPoolExecutor`` whose ``Future.cancel()`` stops a running task.

``stopper.futures.ThreadPoolExecutor`` is a drop-in subclass of the standard executor (same
constructor, ``submit``, ``map``, ``shutdown``, context manager).  What it adds:

- every task runs inside its own child of ``executor.stopper``: ``stopper.current()`` inside
  the task is that child, and the task is interruptible by it in the executor's ``interrupt``
  mode (``"checkpoint"`` by default: ``StopRequested`` is raised only at checkpoints such as
  ``stopper.sleep``, stopper waits and, after ``stopper.patch()``, blocking standard calls);
- ``future.cancel()`` of a **running** task stops that child and waits until the task has
  ended.  If it ended by the stop (it raised ``StopRequested``), the future is cancelled and
  ``cancel()`` returns True; if it returned or failed otherwise first, the future keeps that
  outcome and ``cancel()`` returns False.  The return value always matches the final state.
  A task cancelling its own future cannot wait for itself: there ``cancel()`` is the standard
  one (False for a running future);
- ``shutdown(cancel_futures=True)`` cancels the pending tasks (as the standard executor does)
  and also cancels the running ones, as ``cancel()`` does; ``shutdown(wait=True)`` then joins;
- ``executor.stopper.stop()`` stops every task at once; their futures end with the
  ``StopRequested`` they raised (a stop that nobody asked the *future* to cancel is an error of
  the task, as ``result()`` then reports).

``cancel()`` waits as long as the task takes to notice the stop: a task that never reaches a
checkpoint (and is not in ``"async"`` mode) keeps ``cancel()`` waiting until it returns.
"""

from __future__ import annotations

import concurrent.futures as _cf
import sys
import threading
import warnings
from concurrent.futures import _base
from typing import Any, Callable, Optional

from ._stopper import Stopper
from ._errors import StopRequested

__all__ = ["ThreadPoolExecutor", "Future"]

_MISSING: Any = object()
_MODES = ("checkpoint", "async", True, False, None)


def _check_mode(interrupt: Any) -> Any:
    if not any(interrupt is m or (isinstance(m, str) and interrupt == m) for m in _MODES):
        raise ValueError(
            f"interrupt must be 'checkpoint', 'async', True or False, not {interrupt!r}"
        )
    return interrupt


class _Task:
    """What one submitted call needs to run inside its stopper and to be cancelled."""

    __slots__ = ("fn", "args", "kwargs", "stopper", "mode", "cancelling", "thread", "future")

    def __init__(self, fn: Callable[..., Any], args: Any, kwargs: Any, stopper: Stopper, mode: Any) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.stopper = stopper
        self.mode = mode
        self.cancelling = False  # set under the future's condition while it is RUNNING
        self.thread: Optional[int] = None
        self.future: Optional["Future"] = None

    def run(self) -> Any:
        self.thread = threading.get_ident()
        s = self.stopper
        fn, args, kwargs = self.fn, self.args, self.kwargs
        self.fn = self.args = self.kwargs = None  # like _WorkItem: drop references early
        with s:
            if self.mode is False or self.mode is None:
                return fn(*args, **kwargs)
            with s.interruptible(self.mode):
                return fn(*args, **kwargs)


class Future(_cf.Future):
    """The futures of :class:`ThreadPoolExecutor`: ``cancel()`` also stops a running task."""

    _stopper_task: Optional[_Task] = None

    def cancel(self) -> bool:
        if not self._request_cancel():
            return super().cancel()  # pending, done, or cancelled from inside its own task
        with self._condition:
            while self._state == _base.RUNNING:
                self._condition.wait()
            return self._state in (_base.CANCELLED, _base.CANCELLED_AND_NOTIFIED)

    def _request_cancel(self) -> bool:
        """If the task is running (on another thread): marks it as being cancelled and stops
        its stopper.  True if it did; the task's outcome then decides the future's state."""
        task = self._stopper_task
        if task is None or task.thread == threading.get_ident():
            return False
        with self._condition:
            if self._state != _base.RUNNING:
                return False
            task.cancelling = True
        task.stopper.stop()
        return True

    def set_exception(self, exception: Optional[BaseException]) -> None:
        task = self._stopper_task
        if task is not None and task.cancelling and isinstance(exception, StopRequested):
            self._cancel_running()
        else:
            super().set_exception(exception)

    def _cancel_running(self) -> None:
        """The running task ended by the stop that cancel() asked for: RUNNING -> cancelled,
        seen as such by result(), wait(), as_completed() and the done callbacks."""
        with self._condition:
            if self._state != _base.RUNNING:
                raise _base.InvalidStateError(f"{self._state}: {self!r}")
            self._state = _base.CANCELLED_AND_NOTIFIED
            for waiter in self._waiters:
                waiter.add_cancelled(self)
            self._condition.notify_all()
        self._invoke_callbacks()


def _adopt(f: _cf.Future, task: _Task) -> Future:
    """Makes the standard future that the base ``submit`` created one of ours.

    The base class creates the future inside ``submit`` and offers no way to choose its class;
    rewriting ``submit`` would copy private internals that differ between Python versions.  So
    the new future's class is switched to :class:`Future` (a subclass that adds no fields, only
    methods) before ``submit`` returns, i.e. before anyone else can call ``cancel()`` on it.
    The worker may already be running the task: until the switch its state changes go through
    the inherited methods, which is correct since nothing can have asked for a cancel yet.
    """
    f.__class__ = Future
    f._stopper_task = task  # type: ignore[attr-defined]
    task.future = f  # type: ignore[assignment]
    return f  # type: ignore[return-value]


class ThreadPoolExecutor(_cf.ThreadPoolExecutor):
    """``concurrent.futures.ThreadPoolExecutor`` whose tasks run inside stoppers.

    ``interrupt``: how a stop reaches a running task: ``"checkpoint"`` (default), ``"async"``
    (also between two lines of Python; ``True`` is an alias) or ``False`` (cooperative: the task
    checks ``stopper.current()`` itself).  ``stopper``: a stopper whose stop also stops every
    task; ``executor.stopper`` is a child of it (or a new stopper), so that stopping the
    executor never stops the caller's stopper.
    """

    def __init__(self, max_workers: Optional[int] = None, *args: Any, interrupt: Any = "checkpoint",
                 stopper: Optional[Stopper] = None, **kwargs: Any) -> None:
        _check_mode(interrupt)
        if stopper is not None and not isinstance(stopper, Stopper):
            raise TypeError(f"stopper must be a stopper.Stopper or None, not {type(stopper).__name__}")
        super().__init__(max_workers, *args, **kwargs)
        self._interrupt = interrupt
        self._stopper = stopper.child() if stopper is not None else Stopper()
        self._running_tasks: "dict[int, _Task]" = {}
        self._tasks_lock = threading.Lock()

    @property
    def stopper(self) -> Stopper:
        """The stopper whose stop stops every task of this executor."""
        return self._stopper

    def submit(self, fn: Any = _MISSING, /, *args: Any, **kwargs: Any) -> Future:  # type: ignore[override]
        if fn is not _MISSING:
            pass
        elif sys.version_info < (3, 9) and "fn" in kwargs:  # 3.8 still accepted fn= (deprecated)
            fn = kwargs.pop("fn")
            warnings.warn("Passing 'fn' as keyword argument is deprecated", DeprecationWarning, stacklevel=2)
        else:
            raise TypeError("submit() missing 1 required positional argument: 'fn'")
        task = _Task(fn, args, kwargs, self._stopper.child(), self._interrupt)
        return _adopt(super().submit(self._run, task), task)

    def _run(self, task: _Task) -> Any:
        with self._tasks_lock:
            self._running_tasks[id(task)] = task
        try:
            return task.run()
        finally:
            with self._tasks_lock:
                self._running_tasks.pop(id(task), None)
            task.future = None

    submit.__doc__ = _cf.ThreadPoolExecutor.submit.__doc__

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """As the standard ``shutdown``; ``cancel_futures=True`` also cancels the running
        tasks (their stoppers stop; each future ends cancelled if its task ended by the stop)."""
        if not cancel_futures:
            return super().shutdown(wait)
        if sys.version_info >= (3, 9):
            super().shutdown(wait=False, cancel_futures=True)
        else:
            super().shutdown(wait=False)
            self._cancel_pending_38()
        with self._tasks_lock:
            tasks = list(self._running_tasks.values())
        for task in tasks:
            f = task.future
            if f is None or not f._request_cancel():
                task.stopper.stop()  # submit() has not returned it yet: stop it all the same
        if wait:
            super().shutdown(wait=True)

    def _cancel_pending_38(self) -> None:
        """Python 3.8 has no ``cancel_futures``: what 3.9 does, on the same queue."""
        import queue

        while True:
            try:
                item = self._work_queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item.future.cancel()
        self._work_queue.put(None)
