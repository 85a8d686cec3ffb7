"""``stopper.sync.Lock`` and ``RLock``: ``threading``'s locks whose blocking acquire is a checkpoint.

How a lock waits
----------------
The lock's state is a real ``_thread`` lock (``_block``): held means locked.  Acquiring first
tries it without blocking, in C, so the uncontended path costs one C call more than
``threading.Lock`` does.  A thread that has to wait:

* outside any interruptible scope (``checkpoint_stopper()`` is None) blocks on ``_block`` itself,
  in C, exactly as ``threading.Lock.acquire`` does;
* inside one, registers a one-shot wake-up (a fresh native :class:`Stopper`) in the lock's FIFO
  ``_waiters``, tries the lock once more (so a release between its first try and its
  registration is not missed), and then waits on "woken OR the scope stopped" with
  :func:`wait_any`.  ``release()`` frees ``_block`` and then wakes the oldest registered waiter,
  which tries again (a thread that arrives meanwhile may take the lock first, as with
  ``threading.Lock``; the loser registers again).

A waiter that leaves without the lock (stopped, timed out) after a release already chose it
passes that wake-up on to the next waiter, so a stop never swallows a release.

The rule for "acquired and stopped at the same time"
----------------------------------------------------
``acquire()`` either returns True and the caller holds the lock, or raises ``StopRequested``
and the caller does not hold it.  A waiter that gets the lock in the same instant as its scope
stops gives the lock back (waking the next waiter) before ``StopRequested`` leaves ``acquire``.
An acquire that does not have to wait (the lock is free) succeeds without looking at the stop,
like every ``stopper.sync`` call that can complete at once: only a call that would block is a
checkpoint.
"""

from __future__ import annotations

import collections
import threading
import time
from _thread import allocate_lock as _allocate_lock
from _thread import get_ident as _get_ident
from typing import Any, Optional, Tuple

from ._stopper import Stopper, wait_any

from ._delivery import checkpoint_stopper, in_checkpoint

__all__ = ["Lock", "RLock"]

_monotonic = time.monotonic
_TIMEOUT_MAX = threading.TIMEOUT_MAX


class _Waiter:
    """One registered wait: ``ev`` is stopped by the release that chooses this waiter.
    (A class of its own so that the FIFO compares waiters by identity, in C.)"""

    __slots__ = ("ev",)

    def __init__(self) -> None:
        self.ev = Stopper()


class _StoppableBlock:
    """What Lock and RLock share: the real lock, the scope waiters, and the waiting."""

    __slots__ = ("_block", "_waiters", "__weakref__")

    def __init__(self) -> None:
        self._block = _allocate_lock()
        self._waiters: "collections.deque[_Waiter]" = collections.deque()

    def _take(self, blocking: bool, timeout: float) -> bool:
        """Takes ``_block`` the slow way (the non-blocking try failed or a timeout was given)."""
        s = checkpoint_stopper()
        if s is None or not blocking or (timeout != -1 and not 0 <= timeout <= _TIMEOUT_MAX):
            # outside any scope, a non-blocking try, or a bad timeout (the real lock raises the
            # very error threading.Lock would)
            return self._block.acquire(blocking, timeout)
        if self._block.acquire(False):
            return True
        got = False
        try:
            with in_checkpoint():
                got = self._wait(s, timeout)
        except BaseException:
            if got:  # acquired in the instant the scope stopped: give it back (see the rule)
                self._give()
            raise
        return got

    def _wait(self, s: Stopper, timeout: float) -> bool:
        """Waits for ``_block`` or the stop of ``s``; True once taken, False on time-out or stop
        (the caller's checkpoint then raises)."""
        deadline = None if timeout == -1 else _monotonic() + timeout
        waiters = self._waiters
        while True:
            w = _Waiter()
            waiters.append(w)
            if self._block.acquire(False):
                self._forget(w, pass_on=False)
                return True
            if deadline is None:
                left = None
            else:
                left = deadline - _monotonic()
                if left <= 0:
                    self._forget(w, pass_on=True)
                    return self._block.acquire(False)
            try:
                woke = wait_any((w.ev, s), left)  # raises StopRequested when the scope stops
            except BaseException:
                self._forget(w, pass_on=True)
                raise
            if woke == 0 and not s.is_set():
                continue  # woken by a release: try again (a newcomer may have won the race)
            self._forget(w, pass_on=True)
            if s.is_set():
                return False
            return self._block.acquire(False)  # timed out: one last try, as a timed C wait ends

    def _forget(self, w: _Waiter, pass_on: bool) -> None:
        """Unregisters ``w``; if a release had already chosen it and we leave without the lock,
        hands that wake-up to the next waiter."""
        try:
            self._waiters.remove(w)
        except ValueError:  # a release took it off the list and woke it
            if pass_on:
                self._wake_one()

    def _wake_one(self) -> None:
        try:
            w = self._waiters.popleft()
        except IndexError:
            return
        w.ev.stop()

    def _give(self) -> None:
        """Releases ``_block`` and wakes the oldest scope waiter."""
        self._block.release()
        if self._waiters:
            self._wake_one()

    def _reinit_after_fork(self) -> None:
        self._block = _allocate_lock()
        self._waiters = collections.deque()


class Lock(_StoppableBlock):
    """``threading.Lock`` whose blocking ``acquire`` is a checkpoint (see the module notes)."""

    __slots__ = ()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """As ``threading.Lock.acquire``; inside a stopped interruptible scope, a call that has
        to wait raises ``StopRequested`` (and does not hold the lock)."""
        if timeout == -1 and self._block.acquire(False):
            return True
        return self._take(blocking, timeout)

    __enter__ = acquire

    def release(self) -> None:
        """As ``threading.Lock.release`` (RuntimeError when unlocked)."""
        self._block.release()
        if self._waiters:
            self._wake_one()

    def __exit__(self, t: Any, v: Any, tb: Any) -> None:
        self._block.release()
        if self._waiters:
            self._wake_one()

    def locked(self) -> bool:
        return self._block.locked()

    def acquire_lock(self, blocking: bool = True, timeout: float = -1) -> bool:  # _thread's old names
        return self.acquire(blocking, timeout)

    def release_lock(self) -> None:
        self.release()

    def locked_lock(self) -> bool:
        return self._block.locked()

    # What threading.Condition uses when its lock has them: the re-acquire at the end of
    # wait() must not be interrupted (wait() always returns, or raises, holding the lock).
    def _release_save(self) -> None:
        self.release()

    def _acquire_restore(self, state: Any) -> None:
        self._block.acquire()

    def _at_fork_reinit(self) -> None:
        self._reinit_after_fork()

    def __repr__(self) -> str:
        cls = type(self)
        state = "locked" if self._block.locked() else "unlocked"
        return f"<{state} {cls.__module__}.{cls.__qualname__} object at {id(self):#x}>"


class RLock(_StoppableBlock):
    """``threading.RLock`` whose blocking ``acquire`` is a checkpoint (see the module notes)."""

    __slots__ = ("_owner", "_count")

    def __init__(self) -> None:
        super().__init__()
        self._owner: Optional[int] = None
        self._count = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """As ``threading.RLock.acquire``; the first (outermost) acquire is a checkpoint when it
        has to wait."""
        me = _get_ident()
        if self._owner == me:
            self._count += 1
            return True
        if not (timeout == -1 and self._block.acquire(False)) and not self._take(blocking, timeout):
            return False
        self._owner = me
        self._count = 1
        return True

    __enter__ = acquire

    def release(self) -> None:
        if self._owner != _get_ident():
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if not self._count:
            self._owner = None
            self._give()

    def __exit__(self, t: Any, v: Any, tb: Any) -> None:
        self.release()

    def locked(self) -> bool:
        return self._block.locked()

    def _is_owned(self) -> bool:
        return self._owner == _get_ident()

    def _recursion_count(self) -> int:
        return self._count if self._owner == _get_ident() else 0

    def _release_save(self) -> Tuple[int, Optional[int]]:
        if self._owner != _get_ident():
            raise RuntimeError("cannot release un-acquired lock")
        state = (self._count, self._owner)
        self._count = 0
        self._owner = None
        self._give()
        return state

    def _acquire_restore(self, state: Tuple[int, Optional[int]]) -> None:
        self._block.acquire()  # not interrupted: see Lock._acquire_restore
        self._count, self._owner = state

    def _at_fork_reinit(self) -> None:
        self._reinit_after_fork()
        self._owner = None
        self._count = 0

    def __repr__(self) -> str:
        cls = type(self)
        state = "locked" if self._block.locked() else "unlocked"
        return (
            f"<{state} {cls.__module__}.{cls.__qualname__} object owner={self._owner!r} "
            f"count={self._count} at {id(self):#x}>"
        )
