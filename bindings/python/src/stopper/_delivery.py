"""How a stop reaches a thread: scopes, checkpoints, shields and asynchronous delivery.

A thread meets a stop in one of three ways, chosen per scope (SPEC, "Python: how a stop reaches
a thread"): cooperatively (``with s:``: nothing is raised), at **checkpoints** (mode
``"checkpoint"``: stopper's own waits, :func:`checkpoint`, :func:`sleep`, ``stopper.sync``, the
patched standard library), or anywhere (mode ``"async"``: an asynchronous exception through
``PyThreadState_SetAsyncExc``, plus every checkpoint).

The one mechanism: the no-delivery region
-----------------------------------------
An asynchronous exception must never land inside a :func:`shield` block, inside a checkpoint's
blocking call (it would surface later, in the caller's ``except``/``finally``), nor inside the
package's own bookkeeping (entering and leaving scopes, registering and cancelling callbacks).
All three are *no-delivery regions*: ``ThreadState.hold`` counts how deep the thread is in
them.  Two rules, both applied under ``ThreadState.lock``:

1. The interrupt hook (:func:`_deliver`, called by the native library on the stopping thread
   or its service thread) schedules an exception only when ``hold == 0``; otherwise it refuses
   and the scope's stop stays *undelivered*.
2. Entering a region (:func:`_hold`) first cancels an exception that was scheduled but has not
   been raised yet (``PyThreadState_SetAsyncExc(tid, NULL)``; CPython keeps a scheduled
   exception on the thread state until that thread's next eval-breaker check, e.g. while it
   is blocked in C), marks its scope undelivered again, and only then counts the region.  If
   that exception fires before it can be cancelled, it fired *before* the region began: the
   region was never entered and nothing is left half done.

What happens to an undelivered stop depends on how the region ends: a checkpoint raises
``StopRequested`` at its exit (so the thread is not also sent an asynchronous exception for the
same stop, and if the blocking call ended with its own error that error passes through and the
stop counts as delivered: nothing lands later in the cleanup code); a shield raises it at its
exit when the block ended normally; the package's bookkeeping leaves it to the hook, which the
delivery for a moment later (:data:`later`) when it cannot be raised where the region ends.

The hook also does not schedule while the thread is paused in this package's own code (it
looks at the thread's current frame, holding the GIL): an exception would fire there, e.g. on the
first line of a scope's ``__exit__`` before its region begins; it tries again a moment later.

Where an exception scheduled for the thread actually fires is known: CPython creates the
exception object in the target thread when it raises it (at once from 3.12, before any handler
runs on older versions), and :class:`_Delivered` records that in its constructor.

Limits: ``KeyboardInterrupt`` from a signal is not an exception this package schedules and can
still arrive anywhere in the main thread, as in any Python code.
"""

from __future__ import annotations

import os
import sys
import threading
import time
TYPE_CHECKING = False  # typing is not imported at run time: `import stopper` stays light
if TYPE_CHECKING:
    from typing import Any, List, Optional

from . import _lifecycle as _lc
from . import _native as _n
from ._errors import StopRequested

__all__ = ["checkpoint_stopper", "in_checkpoint", "checkpoint", "shield", "sleep"]

#: The delivery modes of an interruptible scope.
MODES = ("checkpoint", "async")
#: Set by :mod:`stopper._stopper`: ``later(fn)`` calls ``fn()`` about a millisecond from now,
#: from the library's service thread (a one-shot deadline; disarmed at interpreter exit).
later: Any = None


def mode_arg(mode: Any, *, cooperative_ok: bool = False) -> Optional[str]:
    """Normalizes a delivery mode: "checkpoint", "async" (True is "async"); with
    ``cooperative_ok``, False/None mean cooperative (None is returned)."""
    if mode is True:
        return "async"
    if cooperative_ok and (mode is False or mode is None):
        return None
    if isinstance(mode, str) and mode in MODES:
        return mode
    allowed = "'checkpoint', 'async' or True" + (" (or False)" if cooperative_ok else "")
    raise ValueError(f"unknown interrupt mode {mode!r}: expected {allowed}")


#: CPython 3.13 (seen on 3.13.0; python/cpython#139622): an asynchronous exception raised right
#: after a C call returns is raised with a wrong position, so the interrupted frame's ``except``,
#: ``finally`` and ``with`` exits are skipped (its callers' run).  Checkpoints are unaffected.
ASYNC_EXCEPTIONS_SKIP_HANDLERS = sys.version_info[:2] == (3, 13)
_warned = []


def _warn_async_on_313() -> None:
    if not _warned:
        _warned.append(True)
        import warnings

        warnings.warn(
            "stopper: on Python 3.13 an asynchronous exception can skip the except/finally/with "
            "exits of the frame it interrupts (python/cpython#139622); use "
            'interrupt="checkpoint" / mode="checkpoint" for code that must clean up',
            RuntimeWarning,
            stacklevel=4,
        )


# ---------------------------------------------------------------- per-thread state
class _Local(threading.local):
    cp: Any = None  # the stopper checkpoints of this thread wake on (None: none / in a shield)
    ts: Any = None  # this thread's ThreadState


_tls = _Local()


class ThreadState:
    """What the package knows about one thread.  Only its own thread changes ``stack``,
    ``cp`` and ``shields``; hooks on other threads read and set the delivery fields under
    ``lock``."""

    __slots__ = ("ident", "lock", "hold", "scheduled", "stack", "cp", "shields")

    def __init__(self) -> None:
        self.ident = threading.get_ident()
        self.lock = threading.Lock()
        self.hold = 0  # depth of no-delivery regions
        self.scheduled: List[Entry] = []  # scopes served by an exception scheduled, not raised
        self.stack: List[Entry] = []  # entered scopes, innermost last
        self.cp: Any = None  # checkpoint stopper of the interruptible scopes (even in a shield)
        self.shields: List[shield] = []


def state() -> ThreadState:
    ts = _tls.ts
    if ts is None:
        ts = _tls.ts = ThreadState()
    return ts


def outside_scopes() -> bool:
    """True when the calling thread is in no scope (``with s:`` or interruptible): no stop is
    delivered to it, so the package's own calls need no no-delivery region there (a fast path
    for :meth:`Stopper.stop`, whose shield matters only to a thread that scopes can interrupt)."""
    ts = _tls.ts
    return ts is None or not ts.stack


def checkpoint_stopper() -> Any:
    """The stopper that a blocking call made by the calling thread must also wake on, or None.

    None when the thread is in no interruptible scope, or inside :func:`shield`: then the caller
    behaves exactly like the call it replaces.  With nested interruptible scopes it is a stopper
    linked to all of theirs (made once per scope entry), so one wait covers them all."""
    return _tls.cp


# ---------------------------------------------------------------- scopes
class Entry:
    """One entered scope of a thread: ``with s:`` (mode None), or an interruptible scope."""

    __slots__ = ("ts", "stopper", "mode", "active", "delivered", "later", "saved_cp", "cp", "key", "hook")

    def __init__(self, ts: ThreadState, stopper: Any, mode: Optional[str]) -> None:
        self.ts = ts
        self.stopper = stopper
        self.mode = mode
        self.active = False
        self.delivered = False  # this scope's stop has been raised (or is scheduled) in the thread
        self.later = False  # a delivery a moment later is armed
        self.saved_cp: Any = None
        self.cp: Any = None
        self.key = 0
        self.hook: Any = None


_interrupts: "dict[int, Entry]" = {}  # hook data -> async scope


def enter(stopper: Any, mode: Optional[str], link: Any = None) -> Entry:
    """Makes the calling thread a worker of ``stopper`` (``stopper_enter``), interruptible in
    ``mode`` (None: cooperative).  ``link(a, b)`` makes a stopper stopped when either is (for
    nested interruptible scopes).  An async scope entered already stopped raises
    StopRequested here, after leaving it again (no hook call would come)."""
    ts = state()
    e = Entry(ts, stopper, mode)
    if mode == "async" and ASYNC_EXCEPTIONS_SKIP_HANDLERS:
        _warn_async_on_313()
    if mode is not None:
        e.saved_cp = ts.cp
        e.cp = stopper if ts.cp is None else link(ts.cp, stopper)
    if mode == "async":
        e.key = _lc.new_key()
        e.hook = _n.Hook(HOOK_TRAMP, e.key, 0)
    _hold(ts)
    try:
        if e.hook is not None:
            _interrupts[e.key] = e
        e.active = True
        st = _n.stopper_enter(stopper._h, e.hook)
        if st >= 0:
            ts.stack.append(e)
            if mode is not None:
                ts.cp = e.cp
                _show_cp(ts)
        else:
            e.active = False
            _interrupts.pop(e.key, None)
    finally:
        due = _release(ts, True)  # also: an async scope entered stopped (no hook call comes)
    if st < 0:
        _n.fail(st, "stopper_enter")
    if due is not None:
        leave(e)
        raise _stop_exc(due)
    return e


def leave(e: Entry, deliver: bool = True) -> None:
    """Leaves scope ``e`` and every scope entered after it that is still open (one whose exit
    never ran).  A stop of an enclosing async scope refused meanwhile is raised at the end
    (``deliver``) or left to the next hook call."""
    ts = e.ts
    if ts is not _tls.ts or e not in ts.stack:
        raise RuntimeError("stopper: leaving a scope that this thread is not inside")
    _hold(ts)
    try:
        while True:
            top = ts.stack.pop()
            top.active = False
            _n.stopper_exit(top.stopper._h)  # waits for a hook call in progress
            if top.hook is not None:
                _interrupts.pop(top.key, None)
            if top.mode is not None:
                ts.cp = top.saved_cp
                top.cp = None
            if top is e:
                break
        _show_cp(ts)
    finally:
        due = _release(ts, deliver)
    if due is not None:
        raise _stop_exc(due)


class Scope:
    """What :meth:`Stopper.interruptible` returns: a context manager (one block at a time)
    that makes the calling thread interruptible by ``stopper`` in ``mode``."""

    __slots__ = ("stopper", "mode", "_link", "_entry")

    def __init__(self, stopper: Any, mode: Optional[str], link: Any) -> None:
        self.stopper = stopper
        self.mode = mode
        self._link = link
        self._entry: Optional[Entry] = None

    def __enter__(self) -> Any:
        if self._entry is not None:
            raise RuntimeError("this interruptible() is already in use: create one per block")
        self._entry = enter(self.stopper, self.mode, self._link)
        return self.stopper

    def __exit__(self, *exc: Any) -> None:
        e, self._entry = self._entry, None
        if e is None:
            raise RuntimeError("interruptible(): __exit__ without __enter__")
        leave(e)


def depth() -> int:
    """How many scopes the calling thread is inside."""
    return len(state().stack)


def unwind(n: int) -> None:
    """Leaves every scope above the first ``n`` (ones whose exit never ran)."""
    ts = state()
    if len(ts.stack) > n:
        leave(ts.stack[n])


def rearm_enclosing(ts: ThreadState) -> None:
    """The exception that was unwinding has been consumed (an inner timeout converted it):
    an enclosing stopped async scope must still be interrupted."""
    with ts.lock:
        for e in ts.stack:
            if e.mode == "async" and e.active and e.stopper.is_set():
                e.delivered = False
    _deliver_later(ts)


def _deliver_later(ts: ThreadState) -> None:
    """A refused stop that cannot be raised where its region ends (an exception is passing, or
    a result must reach the caller): delivered by a hook call a millisecond later."""
    due = [
        e
        for e in ts.stack
        if e.mode == "async" and e.active and not e.delivered and not e.later and e.stopper.is_set()
    ]
    if not due or later is None:
        return
    _hold(ts)  # arming it is bookkeeping too
    try:
        for e in due:
            e.later = True
            later(lambda e=e: _deliver_again(e))
    finally:
        with ts.lock:
            ts.hold -= 1


def _deliver_again(e: Entry) -> None:
    e.later = False
    _deliver(e)


def _show_cp(ts: ThreadState) -> None:
    _tls.cp = None if ts.shields else ts.cp


# ---------------------------------------------------------------- the no-delivery region
def _hold(ts: ThreadState) -> None:
    """Enters a no-delivery region (see the module doc)."""
    with ts.lock:
        if ts.scheduled:
            _n.clear_async_exc(ts.ident, None)  # scheduled, not raised yet: cancelled
            for e in ts.scheduled:
                e.delivered = False
            ts.scheduled = []
        ts.hold += 1


def _release(ts: ThreadState, deliver: bool) -> Optional[Entry]:
    """Leaves a no-delivery region of the package's bookkeeping.  When it was the outermost
    and ``deliver`` is true, returns the innermost async scope whose stop was refused
    meanwhile, now marked delivered: the caller raises it (so a loop of bookkeeping calls is
    interrupted like any other code).  Otherwise a refused stop is left to the next hook call."""
    with ts.lock:
        ts.hold -= 1
        if ts.hold:
            return None
        if deliver:
            return _claim(ts, True)
    _deliver_later(ts)
    return None


def _claim(ts: ThreadState, async_only: bool) -> Optional[Entry]:
    """(Under ts.lock.)  Marks the stopped scopes' stops as delivered by a StopRequested that
    the caller raises now; returns the innermost such scope.  ``async_only``: only async scopes
    whose stop is still undelivered count."""
    first = None
    for e in reversed(ts.stack):
        if e.mode is None or not e.active or not e.stopper.is_set():
            continue
        if async_only and (e.mode != "async" or e.delivered):
            continue
        e.delivered = True
        if first is None:
            first = e
    return first


def _stop_exc(e: Entry) -> StopRequested:
    return StopRequested("stopped", reason=e.stopper.reason or None)


class quiet:
    """The package's bookkeeping as a no-delivery region: ``with quiet(): ...``.  At its exit
    a stop refused meanwhile is raised (``deliver``, when no exception is passing) or
    delivered a moment later."""

    __slots__ = ("_ts", "_deliver")

    def __init__(self, deliver: bool = True) -> None:
        self._deliver = deliver

    def __enter__(self) -> None:
        ts = self._ts = state()
        _hold(ts)

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        due = _release(self._ts, self._deliver and et is None)
        if due is not None:
            raise _stop_exc(due)


class in_checkpoint:
    """Wraps the blocking part of a checkpoint.

    While the thread is inside it, a stop is not also delivered as an async exception.  On a
    normal exit it raises StopRequested if a stopper of an enclosing interruptible scope is
    stopped.  An exception raised inside passes through unchanged, and a stop that happened
    meanwhile counts as delivered (nothing is raised into the code that handles that error).
    """

    __slots__ = ("_ts", "_done")

    def __enter__(self) -> "in_checkpoint":
        ts = self._ts = state()
        self._done = False
        _hold(ts)
        return self

    def completed(self) -> None:
        """The call succeeded and its result must reach the caller (an item was taken from a
        queue): do not raise at the exit; the stop is raised by the next checkpoint (and, in
        async mode, by the next hook call)."""
        self._done = True

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        ts = self._ts
        with ts.lock:
            ts.hold -= 1
            stopped = not self._done and ts.cp is not None and ts.cp.is_set()
            e = _claim(ts, False) if stopped else None
        if e is not None and et is None and not ts.shields:
            raise _stop_exc(e)
        if self._done and not ts.hold:
            _deliver_later(ts)


def checkpoint() -> None:
    """Raises StopRequested now if a stopper of an enclosing interruptible scope (or timeout) of
    this thread is stopped (never inside a shield).  Raised every time it is reached."""
    cp = _tls.cp
    if cp is not None and cp.is_set():
        ts = state()
        with ts.lock:
            if ts.scheduled:  # the same stop, already on its way: raise it here instead
                _n.clear_async_exc(ts.ident, None)
                ts.scheduled = []
            e = _claim(ts, False)
        if e is not None:
            raise _stop_exc(e)


class shield:
    """``with stopper.shield(): ...``: nothing is raised inside the block, in either mode.

    A stop of an async scope that arrives meanwhile (or was scheduled and had not fired when
    the shield was entered) is raised as StopRequested when the block exits normally, if the
    scope is still stopped.  Checkpoints inside behave like the calls they replace.  Shields
    nest; exiting one that is not the innermost raises RuntimeError."""

    __slots__ = ("_ts",)

    def __init__(self) -> None:
        self._ts: Optional[ThreadState] = None

    def __enter__(self) -> "shield":
        if self._ts is not None:
            raise RuntimeError("this shield() is already in use: create one per block")
        ts = state()
        _hold(ts)
        self._ts = ts
        ts.shields.append(self)
        _tls.cp = None
        return self

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        ts = self._ts
        if ts is None or not ts.shields or ts.shields[-1] is not self:
            raise RuntimeError("stopper.shield() exited out of order (or never entered)")
        ts.shields.pop()
        self._ts = None
        _show_cp(ts)
        e = _release(ts, et is None)
        if e is not None:
            raise _stop_exc(e)


def sleep(seconds: float) -> None:
    """:func:`time.sleep` that is a checkpoint: inside an interruptible scope it raises
    StopRequested at once on a stop; outside any, it is :func:`time.sleep`."""
    cp = _tls.cp
    if cp is None:
        return time.sleep(seconds)
    # the arguments time.sleep takes (a float, or an int or an object with __index__), its errors
    if isinstance(seconds, float):
        secs = seconds
    elif hasattr(type(seconds), "__index__"):
        secs = float(seconds.__index__())
    elif sys.version_info < (3, 10) and hasattr(type(seconds), "__int__"):
        secs = float(int(seconds))  # before 3.10, time.sleep also took __int__ (deprecated)
    else:
        raise TypeError(f"'{type(seconds).__name__}' object cannot be interpreted as an integer")
    if secs != secs:
        raise ValueError("Invalid value NaN (not a number)")
    if secs < 0:
        raise ValueError("sleep length must be non-negative")
    ns = -1 if secs == float("inf") else min(int(secs * 1e9), _n.INT64_MAX)
    with in_checkpoint():
        _n.stopper_wait(cp._h, ns)
    return None


# ---------------------------------------------------------------- asynchronous delivery
class _Delivered(StopRequested):
    """The class raised asynchronously into a thread.  CPython creates its instance in that
    thread when the exception fires: the constructor records that it is no longer pending."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        ts = _tls.ts
        if ts is not None and ts.scheduled:
            e = ts.scheduled[0]
            ts.scheduled = []
            self.reason = e.stopper.reason or None


_Delivered.__name__ = _Delivered.__qualname__ = "StopRequested"
_Delivered.__module__ = "stopper"


def _in_package_code(ts: ThreadState) -> bool:
    """Whether thread ``ts`` is paused inside this package's own code (e.g. on the first line
    of a scope's ``__exit__``, before its no-delivery region begins): an exception scheduled
    now would fire there.  The hook holds the GIL, so the thread cannot move meanwhile."""
    frame = sys._current_frames().get(ts.ident)
    return frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _deliver(e: Entry) -> None:
    """The hook: schedules the async exception for scope ``e`` unless its thread is in a
    no-delivery region (refused), in the package's own code (tried again a moment later), or
    already has one on the way (then it serves this stop too)."""
    if _lc.exiting or not e.active or e.delivered:
        return
    ts = e.ts
    with ts.lock:
        if not e.active or e.delivered or ts.hold:
            return
        if _in_package_code(ts):
            if not e.later and later is not None:
                e.later = True
                later(lambda: _deliver_again(e))
            return
        e.delivered = True
        ts.scheduled.append(e)
        if len(ts.scheduled) == 1:
            _n.set_async_exc(ts.ident, _Delivered)


def _hook_entry(data: Optional[int], thread_id: int, reason: int) -> None:
    try:
        e = _interrupts.get(data or 0)
        if e is not None:
            _deliver(e)
    except BaseException as exc:  # noqa: BLE001 - never unwind into the library
        _lc.report(exc, "stopper interrupt hook")


#: The native hook entry point, alive for the life of the process.
HOOK_TRAMP = _n.HOOK_FN(_hook_entry)
_n.keep_forever(HOOK_TRAMP)
