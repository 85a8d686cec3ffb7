"""Stopper, the per-thread scope stack, interrupts, callbacks and interpreter-exit safety.

Design notes (read before changing anything here)
-------------------------------------------------
*Asynchronous exceptions.*  An interruptible scope (``StoppableThread(interrupt=True)``,
``timeout()``) raises into its thread with ``PyThreadState_SetAsyncExc``.  CPython raises such
an exception at the next "eval breaker" check of that thread: at the start of any Python
function, on a backward jump, or after a call returns.  Python code that tears a scope down
would therefore be interrupted half way.  So every step that must happen exactly once when a
scope is entered or left is a chain of C-level callables (``functools.partial`` of ctypes
functions, list methods, ``setattr``…) run by one C call (``list(map(_CALL, steps))``); no
bytecode, hence no check, runs between its steps.  ``timeout`` objects get a C-level
``__exit__`` from :class:`io.IOBase` (which calls ``self.close()``, an instance attribute
holding such a chain).  Finalizers are C-level weakref callbacks for the same reason.

*The scope stack.*  Each thread keeps a list of entries, each pushed right after a unique
barrier.  Leaving a scope pops (and tears down) everything down to its own barrier, so a
scope whose Python ``__exit__`` never ran (an exception fired at its first line) is torn down
by the next enclosing exit instead of corrupting the native stack.

*Delivery.*  At most one stop exception is in flight per thread (``_ThreadState.delivered_by``);
leaving the delivering scope clears a still-pending one (so it never fires after the scope
ended) and re-delivers for an enclosing scope that stopped meanwhile.  A hook that targets the
thread that is itself inside ``stop()`` defers the exception to the end of that call, so it
never fires inside a ctypes callback (where CPython would print and drop it).

*Interpreter exit.*  Native threads (the library's service thread fires deadlines) call back
into Python through ctypes, which takes the GIL; during finalization that can kill or hang the
calling thread.  An ``atexit`` handler therefore makes every hook and callback a no-op,
disarms the deadlines this package armed (waiting for a stop already in progress to finish),
unregisters every callback, and waits for callbacks running on other threads at that moment
(a stop from a signal or another process runs them on a native thread) before the
interpreter starts finalizing; it holds every live object meanwhile, so no finalizer releases
a native stopper that a step of the handler is using.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import ctypes
import functools
import io
import itertools
import math
import operator
import os
import sys
import threading
import time
import weakref
from ctypes import byref, c_int16, c_size_t, c_uint64
from typing import Any, Callable, Iterable, List, Optional, Sequence, TypeVar, Union

from . import _native as _n
from . import _process as _p
from ._errors import StopRequested, Timeout

__all__ = ["Stopper", "current", "wait_any", "timeout", "StopHandle"]

F = TypeVar("F", bound=Callable[..., Any])

_partial = functools.partial
_deque = collections.deque
_CALL: Callable[[Callable[[], Any]], Any] = getattr(operator, "call", None) or operator.methodcaller("__call__")
_CLOSE = operator.methodcaller("close")
_ID_OF = operator.attrgetter("id")
_BOTTOM: Any = object()  # bottom of every per-stopper key list: iter(keys.pop, _BOTTOM)
_NOOP = int  # a C-level callable that takes no argument and does nothing of note
_keys = itertools.count(1).__next__  # thread-safe under the GIL (C-level next)

# Set by the atexit handler: hooks and callbacks do nothing from then on.
_exiting = False


# ---------------------------------------------------------------- argument checks
def _timeout_ns(timeout: Optional[float], what: str = "timeout") -> int:
    """None -> -1 (no limit); a number of seconds >= 0 -> nanoseconds."""
    if timeout is None:
        return -1
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{what} must be a number of seconds or None, not {type(timeout).__name__}")
    if timeout != timeout:  # NaN
        raise ValueError(f"{what} must be a number of seconds or None, not NaN")
    if timeout < 0:
        raise ValueError(f"{what} must be >= 0 or None, got {timeout!r}")
    if math.isinf(timeout):
        return -1
    ns = int(timeout * 1_000_000_000)
    return ns if ns < _n.INT64_MAX else _n.INT64_MAX


def _reason_arg(reason: int) -> int:
    if isinstance(reason, bool) or not isinstance(reason, int):
        raise TypeError(f"reason must be an int, not {type(reason).__name__}")
    if not _n.INT32_MIN <= reason <= _n.INT32_MAX:
        raise ValueError(f"reason must fit in 32 bits, got {reason}")
    return reason


def _stopper_arg(s: Any, what: str = "stopper") -> "Stopper":
    if not isinstance(s, Stopper):
        raise TypeError(f"{what} must be a stopper.Stopper, not {type(s).__name__}")
    return s


def _fd_arg(sock_or_fd: Any) -> int:
    if isinstance(sock_or_fd, bool):
        raise TypeError("expected a file descriptor or an object with fileno(), not bool")
    if isinstance(sock_or_fd, int):
        fd = sock_or_fd
    else:
        fileno = getattr(sock_or_fd, "fileno", None)
        if fileno is None:
            raise TypeError(
                f"expected a file descriptor or an object with fileno(), not {type(sock_or_fd).__name__}"
            )
        fd = fileno()
        if isinstance(fd, bool) or not isinstance(fd, int):
            raise TypeError("fileno() must return an int")
    if not 0 <= fd <= _n.INT32_MAX:
        raise ValueError(f"invalid file descriptor {fd}")
    return fd


# ---------------------------------------------------------------- per-thread state
class _ThreadState:
    """What the binding knows about one thread.  Only its own thread mutates ``stack``;
    hooks running on other threads (holding the GIL) read and set the delivery fields."""

    def __init__(self) -> None:
        self.ident = threading.get_ident()
        self.stack: List[_Entry] = []
        self.delivered_by: Optional[_Interrupt] = None  # scope whose exception is in flight
        self.in_stop = 0  # > 0 while this thread runs stop()/join()/on_stop() natively
        self.deferred: Optional[_Interrupt] = None  # delivery to raise when that call returns
        self.clear_for: dict = {}  # scope key -> C-level "clear my pending exception" chain


_tls = threading.local()


def _state() -> _ThreadState:
    try:
        return _tls.state
    except AttributeError:
        st = _tls.state = _ThreadState()
        return st


class _Entry:
    """One item of a thread's scope stack.  ``close`` is a C-level callable that undoes what
    entering did (native exit, unregistration…); barriers have a no-op ``close``."""

    __slots__ = ("stopper", "scope", "close")

    def __init__(self, stopper: Optional["Stopper"], scope: Optional["_Interrupt"], close: Callable[[], Any]) -> None:
        self.stopper = stopper
        self.scope = scope
        self.close = close


class _Interrupt:
    """An interruptible scope: raises ``exc`` into thread ``ts`` when ``stopper`` stops."""

    __slots__ = ("key", "stopper", "handle", "ts", "exc", "active", "hook")

    def __init__(self, stopper: "Stopper", ts: _ThreadState, exc: type) -> None:
        self.key = _keys()
        self.stopper = stopper
        self.handle = stopper._h
        self.ts = ts
        self.exc = exc
        self.active = False
        self.hook: Any = None


def _active_scopes(ts: _ThreadState) -> List[_Interrupt]:
    return [e.scope for e in ts.stack if e.scope is not None and e.scope.active]


# ---------------------------------------------------------------- delivery
_interrupts: "dict[int, _Interrupt]" = {}  # hook data -> scope (thread scopes)


def _make_exc(sc: _Interrupt) -> StopRequested:
    e = sc.exc(reason=sc.stopper.reason or None)
    e.__stopper_scope__ = sc  # type: ignore[attr-defined]
    return e


def _mark_delivered(ts: _ThreadState, sc: _Interrupt) -> None:
    ts.delivered_by = sc
    ts.clear_for[sc.key] = _partial(
        _deque,
        map(_CALL, (_partial(_n.clear_async_exc, ts.ident, None), _partial(setattr, ts, "delivered_by", None))),
        0,
    )


def _deliver(sc: Optional[_Interrupt]) -> None:
    """Raises sc's exception into its thread (called with the GIL, from a hook/callback)."""
    if sc is None or _exiting or not sc.active:
        return
    ts = sc.ts
    if ts.delivered_by is not None:
        return
    _mark_delivered(ts, sc)
    if ts.in_stop:
        ts.deferred = sc  # that thread is inside stop(): raised when the call returns
    else:
        _n.set_async_exc(ts.ident, sc.exc)


def _deferring(call: Callable[..., int], *args: Any) -> int:
    """Runs ``call(*args)``, a native call that may run stop callbacks on this thread (stop,
    join, on_stop of a stopped stopper): an exception raised into this thread meanwhile is
    deferred; the caller raises it with :func:`_raise_deferred_now` once its own bookkeeping
    is done."""
    ts = _state()
    ts.in_stop += 1
    try:
        return call(*args)
    finally:
        ts.in_stop -= 1


def _raise_deferred_now() -> None:
    """Raises what :func:`_deferring` held back, if anything."""
    ts = _state()
    if ts.deferred is not None:
        _raise_deferred(ts)


def _raise_deferred(ts: _ThreadState) -> None:
    sc = ts.deferred
    if sc is not None and not ts.in_stop:
        ts.deferred = None
        raise _make_exc(sc)


def _raise_if_interrupted(ts: _ThreadState, scopes: List[_Interrupt]) -> None:
    """After a wait woke: raise at once if an interruptible scope of this thread stopped."""
    for sc in scopes:
        if sc.active and sc.stopper.is_set():
            cur = ts.delivered_by
            if cur is not None and cur.active:
                sc = cur  # its exception may be pending: take it back and raise it now
            else:
                _mark_delivered(ts, sc)
            _n.clear_async_exc(ts.ident, None)
            raise _make_exc(sc)


def _scope_exited(ts: _ThreadState, sc: _Interrupt) -> None:
    """Last (Python) step of leaving an interruptible scope: re-deliver for an enclosing
    scope that stopped while this one held the delivery."""
    if ts.delivered_by is not None or isinstance(sys.exc_info()[1], StopRequested):
        return
    for outer in _active_scopes(ts):
        if outer.stopper.is_set():
            _deliver(outer)
            return


def _exit_chain(
    ts: _ThreadState, barrier: _Entry, sc: Optional[_Interrupt], extra: Sequence[Callable[[], Any]] = ()
) -> Callable[[], Any]:
    """The C-level callable that leaves the scope pushed after ``barrier`` (single use)."""
    steps: List[Callable[[], Any]] = [_partial(_deque, map(_CLOSE, iter(ts.stack.pop, barrier)), 0)]
    if sc is not None:
        steps += [
            # clear this scope's exception if it is still pending, and only then
            _partial(_deque, map(_CALL, map(ts.clear_for.get, (sc.key,), (_NOOP,))), 0),
            _partial(ts.clear_for.pop, sc.key, None),
        ]
    steps += list(extra)
    if sc is not None:
        steps.append(_partial(_scope_exited, ts, sc))  # Python, last: nothing critical after
    return _partial(_deque, map(_CALL, steps), 0)


# ---------------------------------------------------------------- callbacks
class _Callback:
    __slots__ = ("fn", "handle", "id", "keys", "sc")

    def __init__(self, fn: Optional[Callable[[int], Any]], handle: Optional[int], keys: Optional[list], sc: Optional[_Interrupt] = None) -> None:
        self.fn = fn
        self.handle = handle
        self.id = c_uint64(0)
        self.keys = keys
        self.sc = sc


_callbacks: "dict[int, _Callback]" = {}  # callback user_data -> registration


def _report(exc: BaseException, what: str) -> None:
    """Reports an exception from a callback the way threading.excepthook does."""
    try:
        args = threading.ExceptHookArgs([type(exc), exc, exc.__traceback__, threading.current_thread()])  # type: ignore[attr-defined]
        threading.excepthook(args)
    except BaseException:  # noqa: BLE001 - last resort, never let it escape into C
        try:
            sys.unraisablehook(sys.UnraisableHookArgs((type(exc), exc, exc.__traceback__, what, None)))  # type: ignore[call-arg, misc]
        except BaseException:  # noqa: BLE001
            pass


def _restash(exc: BaseException) -> bool:
    """A stop exception this package raised synchronously inside a callback (a nested
    stop() on an interrupted thread): keep it for the enclosing stop() to raise."""
    sc = getattr(exc, "__stopper_scope__", None)
    if sc is None:
        return False
    ts = _state()
    if ts.in_stop:
        ts.deferred = sc
        return True
    return False


# One item per callback running right now, on any thread (C-level append/pop): the exit
# handler waits for them, since it no longer finds them in _callbacks.
_running: list = []


def _callback_entry(data: Optional[int], reason: int) -> None:
    _running.append(None)
    try:
        cb = _callbacks.pop(data or 0, None)
        if cb is None:
            return
        if cb.keys is not None:
            _discard(cb.keys, data)
        if cb.sc is not None:  # a timeout() scope
            _deliver(cb.sc)
        elif cb.fn is _SENTINEL:
            _deadline_done(cb.handle)
        elif cb.fn is _KEEP:
            _kept.pop(cb.handle, None)
        elif not _exiting and cb.fn is not None:
            try:
                cb.fn(reason)
            except BaseException as e:  # noqa: BLE001
                if not _restash(e):
                    _report(e, "stopper on_stop callback")
    except BaseException as e:  # noqa: BLE001 - never unwind into the library
        if not _restash(e):
            _report(e, "stopper callback trampoline")
    finally:
        _running.pop()


def _hook_entry(data: Optional[int], thread_id: int, reason: int) -> None:
    try:
        _deliver(_interrupts.get(data or 0))
    except BaseException as e:  # noqa: BLE001
        if not _restash(e):
            _report(e, "stopper interrupt hook")


# The two native entry points, alive for the life of the process (one extra reference is
# leaked on purpose so that even module teardown never frees code the library may call).
_CB_TRAMP = _n.CALLBACK_FN(_callback_entry)
_HOOK_TRAMP = _n.HOOK_FN(_hook_entry)
ctypes.pythonapi.Py_IncRef(ctypes.py_object(_CB_TRAMP))
ctypes.pythonapi.Py_IncRef(ctypes.py_object(_HOOK_TRAMP))


# ---------------------------------------------------------------- deadlines armed by us
_SENTINEL: Any = object()
# handle -> [stopper object, sentinel key, threading.Event done]: keeps an armed stopper (and
# so its callbacks) alive until its deadline fires or is disarmed, like the C library does.
_armed: "dict[int, list]" = {}


# handle -> [stopper object, sentinel key]: keeps a stopper with a pending stop_on_signal (and
# so its callbacks) alive until it stops, as the C library keeps the native one.
_KEEP: Any = object()
_kept: "dict[int, list]" = {}


def _deadline_done(handle: Optional[int]) -> None:
    a = _armed.pop(handle, None) if handle is not None else None
    if a is not None:
        a[2].set()


# ---------------------------------------------------------------- finalization
# key -> weakref of every live Stopper/Channel, so the exit handler can release them.
_live: "dict[int, weakref.ref]" = {}
_finalizers: "dict[int, Callable[[Any], Any]]" = {}


def _register_finalizer(obj: Any, steps: List[Callable[[], Any]]) -> None:
    """Runs ``steps`` once when ``obj`` dies (or at exit), from a C-level weakref callback:
    ``dict.fromkeys(iterator, value)`` consumes the lazy map (``id`` makes every result
    hashable) and ignores its argument, the weakref."""
    key = _keys()
    steps = steps + [_partial(_live.pop, key, None), _partial(_finalizers.pop, key, None)]
    fin = _partial(dict.fromkeys, map(id, map(_CALL, steps)))
    _finalizers[key] = fin
    _live[key] = weakref.ref(obj, fin)


def _discard(keys: list, key: Any) -> None:
    try:
        keys.remove(key)
    except ValueError:
        pass


def _unregister_keys_step(handle: int, keys: list) -> Callable[[], Any]:
    """C-level: pops every key of ``keys`` and unregisters its callback (finalizers)."""
    regs = filter(None, map(_callbacks.pop, iter(keys.pop, _BOTTOM), itertools.repeat(None)))
    return _partial(_deque, map(_partial(_n.stopper_unregister, handle), map(_ID_OF, regs)), 0)


# ---------------------------------------------------------------- Stopper
# (loop, handle) -> [shared future, number of waiters, fd]: one reader per stopper and loop.
_aio_waits: "dict[tuple, list]" = {}


class Stopper:
    """A stop token: a one-way flag whose waits wake at once.

    Created running; :meth:`stop` stops it for good (a new run takes a new Stopper).
    Thread-safe: every method may be called from any thread.  ``with s:`` makes the calling
    thread a *worker* of ``s`` for the block (:func:`current` returns ``s`` there and
    :meth:`join` waits for it).
    """

    __slots__ = ("_h", "_flag", "_keys", "__weakref__")

    def __init__(self) -> None:
        self._adopt(_n.stopper_new(), "stopper_new")

    def _adopt(self, h: Optional[int], what: str) -> None:
        if not h:
            raise MemoryError(f"{what}: out of memory")
        self._h: Optional[int] = h
        self._flag = _n.FlagView.from_address(_n.stopper_flag(h))
        self._keys: list = [_BOTTOM]
        _register_finalizer(self, [_unregister_keys_step(h, self._keys), _partial(_n.stopper_release, h)])

    @classmethod
    def _wrap(cls, h: Optional[int], what: str) -> "Stopper":
        s = cls.__new__(cls)
        s._adopt(h, what)
        return s

    def _detach(self) -> None:
        """At interpreter exit, before the native reference is released: keep answering
        is_set() from a private copy; other calls see a NULL stopper."""
        self._flag = _n.FlagView(bool(self._flag))
        self._h = None

    # -- the flag
    def is_set(self) -> bool:
        """True once stopped.  Reads the native flag byte in place: no call into the library."""
        return not not self._flag

    def stopped(self) -> bool:
        """Same as :meth:`is_set`."""
        return not not self._flag

    @property
    def reason(self) -> int:
        """The reason recorded by the stop (0 while running)."""
        return int(_n.stopper_reason(self._h))

    def stop(self, reason: int = 0) -> bool:
        """Stops it: wakes every waiter, stops the children, interrupts the workers that
        asked for it, runs the callbacks (all before returning).  ``reason`` 0 records
        :data:`stopper.REASON_REQUESTED`.  Returns True if this call stopped it."""
        r = _reason_arg(reason)
        st = _deferring(_n.stopper_stop, self._h, r)
        _raise_deferred_now()
        if st < 0:
            _n.fail(st, "stopper_stop")
        return st == 1

    # -- waits
    def wait(self, timeout: Optional[float] = None) -> bool:
        """Blocks until stopped or until ``timeout`` seconds passed (None: no limit), like
        :meth:`threading.Event.wait`: returns True once stopped, False on time-out.  Releases
        the GIL.  Inside an interruptible scope that stops, raises its exception at once."""
        ns = _timeout_ns(timeout)
        ts = _state()
        scopes = _active_scopes(ts) if ts.stack else None
        if not scopes:
            st = _n.stopper_wait(self._h, ns)
        else:
            handles = [self._h] + [sc.handle for sc in scopes]
            st = _n.stopper_wait_any(_n.handles_array(handles), len(handles), ns, None)
            _raise_if_interrupted(ts, scopes)
        return _n.check(st, "stopper_wait") == _n.STOPPED

    async def wait_async(self, timeout: Optional[float] = None) -> bool:
        """Awaits the stop in asyncio through :meth:`fileno` (``loop.add_reader``): no
        thread per waiter (all waiters of one stopper in one loop share one reader).
        Returns True once stopped, False after ``timeout`` seconds."""
        _timeout_ns(timeout)
        if self.is_set():
            return True
        loop = asyncio.get_running_loop()
        key = (loop, self._h)
        st = _aio_waits.get(key)
        if st is None:
            fd = self.fileno()
            fut = loop.create_future()

            def ready() -> None:
                loop.remove_reader(fd)
                _aio_waits.pop(key, None)
                if not fut.done():
                    fut.set_result(True)

            try:
                loop.add_reader(fd, ready)
            except NotImplementedError:  # a loop without readers (e.g. Proactor): a thread
                return await loop.run_in_executor(None, self.wait, timeout)
            st = _aio_waits[key] = [fut, 0, fd]
        st[1] += 1
        try:
            if timeout is None:
                await asyncio.shield(st[0])
                return True
            try:
                await asyncio.wait_for(asyncio.shield(st[0]), timeout)
                return True
            except asyncio.TimeoutError:
                return self.is_set()
        finally:
            st[1] -= 1
            if st[1] == 0 and not st[0].done():
                loop.remove_reader(st[2])
                _aio_waits.pop(key, None)
                st[0].cancel()

    def wait_readable(self, sock_or_fd: Any, timeout: Optional[float] = None) -> bool:
        """Waits until ``sock_or_fd`` (a descriptor or an object with ``fileno()``) is readable:
        True when ready, False on time-out; raises :class:`StopRequested` when this stopper
        stops (checked first).  Use it before ``recv``/``accept``: unlike them it wakes on a stop."""
        return self._wait_fd(sock_or_fd, _n.POLLIN, timeout)

    def wait_writable(self, sock_or_fd: Any, timeout: Optional[float] = None) -> bool:
        """Like :meth:`wait_readable`, for writability."""
        return self._wait_fd(sock_or_fd, _n.POLLOUT, timeout)

    def _wait_fd(self, sock_or_fd: Any, events: int, timeout: Optional[float]) -> bool:
        fd = _fd_arg(sock_or_fd)
        ns = _timeout_ns(timeout)
        ts = _state()
        scopes = _active_scopes(ts) if ts.stack else []
        with _Combined(self, scopes) as h:
            revents = c_int16(0)
            st = _n.check(_n.stopper_wait_fd(h, fd, events, ns, byref(revents)), "stopper_wait_fd")
        if st == _n.STOPPED:
            _raise_if_interrupted(ts, scopes)
            raise StopRequested("stopped while waiting for a file descriptor", reason=self.reason)
        return st == _n.OK

    # -- structure
    def child(self) -> "Stopper":
        """A new stopper stopped when this one is (with its reason), never the other way.
        Born stopped if this one is."""
        return Stopper._wrap(_n.stopper_new_child(self._h), "stopper_new_child")

    @classmethod
    def linked(cls, *parents: "Stopper") -> "Stopper":
        """A new stopper stopped when any of ``parents`` is."""
        for p in parents:
            _stopper_arg(p, "each parent")
        hs = [p._h for p in parents]
        return cls._wrap(_n.stopper_new_linked(_n.handles_array(hs), len(hs)), "stopper_new_linked")

    @classmethod
    def shared(cls, name: str) -> "Stopper":
        """Creates or opens the shared stopper ``name``, one stop shared by every process that
        opens the name (also C, C++ or Rust programs using libstopper).

        A stop in any process wakes the waiters of all of them; :meth:`is_set` reads the flag in
        the shared page, and each process's own callbacks, children, descriptor and workers see
        the stop as for any stopper.  The object is ``/dev/shm/stopper.<name>`` (mode 0600).
        In one process, opening a name twice gives the same native stopper (the two objects
        compare equal).  A name stays until :func:`stopper.unlink_shared`; once stopped, a
        shared stopper stays stopped for every later opener, so a new run unlinks first.

        ``name`` must match ``[A-Za-z0-9_.-]{1,200}`` and not be ``.`` or ``..``
        (:class:`ValueError` otherwise, :class:`TypeError` for a non-``str``).  An existing
        object that is corrupt, truncated, of another layout, not this user's or open to
        others is refused with :class:`ValueError`, never trusted.  More than
        ``STOPPER_MAX_OPEN_SHARED`` (127) open at once: :class:`OSError` ``EMFILE``; other
        system failures: :class:`OSError` with their ``errno``.

        With the ``fork`` start method a child inherits the parent's open shared stoppers; a
        child started with ``spawn``/``forkserver`` or by ``exec`` opens the name again (a
        Stopper cannot be pickled: pass the name).
        """
        raw = _p.shared_name_arg(name)
        ctypes.set_errno(0)
        h = _n.stopper_open_shared(raw)
        if not h:
            _p.fail_open(name, ctypes.get_errno())
        return cls._wrap(h, "stopper_open_shared")

    # -- time
    def stop_after(self, seconds: Optional[float], reason: int = _n.REASON_DEADLINE) -> bool:
        """Arms (or re-arms) a deadline: stopped with ``reason`` after ``seconds``, from the
        library's service thread.  ``None`` disarms.  Returns False if already stopped."""
        r = _reason_arg(reason)
        h = self._h
        if seconds is None:
            _n.check(_n.stopper_stop_after(h, -1, 0), "stopper_stop_after")
            a = _armed.pop(h, None) if h else None
            if a is not None:
                cb = _callbacks.pop(a[1], None)
                _discard(self._keys, a[1])
                if cb is not None:
                    _n.stopper_unregister(h, cb.id)
            return not self.is_set()
        ns = _timeout_ns(seconds, "seconds")
        if _exiting:
            raise RuntimeError("stopper: the interpreter is exiting; no new deadline can be armed")
        if h is not None and h not in _armed:
            # A sentinel callback tells when the stop the deadline causes has completed.
            key = _keys()
            cb = _Callback(_SENTINEL, h, self._keys)
            _callbacks[key] = cb
            self._keys.append(key)
            _armed[h] = [self, key, threading.Event()]
            st = _n.stopper_on_stop(h, _CB_TRAMP, key, byref(cb.id))
            if st != _n.OK:
                _callbacks.pop(key, None)
                _discard(self._keys, key)
                _armed.pop(h, None)
                return _n.check(st, "stopper_on_stop") != _n.STOPPED
        st = _n.check(_n.stopper_stop_after(h, ns, r), "stopper_stop_after")
        return st == _n.OK

    def remaining(self) -> Optional[float]:
        """Seconds left before the earliest deadline of this stopper and its ancestors;
        None when there is none; 0.0 once stopped."""
        ns = int(_n.stopper_remaining_ns(self._h))
        if ns < 0:
            return None
        return ns / 1e9

    # -- callbacks
    def on_stop(self, fn: Callable[[int], Any]) -> "StopHandle":
        """Calls ``fn(reason)`` once when this stopper stops, on the stopping thread (at once,
        here, if it is already stopped).  Returns a handle whose ``cancel()`` unregisters it.
        An exception in ``fn`` is reported like :func:`threading.excepthook` does and does not
        keep the other callbacks from running."""
        if not callable(fn):
            raise TypeError(f"on_stop needs a callable, not {type(fn).__name__}")
        if _exiting:
            raise RuntimeError("stopper: the interpreter is exiting; no new callback can be registered")
        h = self._h
        key = _keys()
        cb = _Callback(fn, h, self._keys)
        _callbacks[key] = cb
        self._keys.append(key)
        st = _deferring(_n.stopper_on_stop, h, _CB_TRAMP, key, byref(cb.id))
        if st != _n.OK:
            _callbacks.pop(key, None)
            _discard(self._keys, key)
        _raise_deferred_now()
        _n.check(st, "stopper_on_stop")
        return StopHandle(self, key, cb, st == _n.OK)

    # -- descriptors
    def fileno(self) -> int:
        """A descriptor that polls readable from the stop on (owned by the stopper: do not
        read or close it), for select/selectors/asyncio."""
        fd = int(_n.stopper_fd(self._h))
        if fd < 0:
            _n.fail(fd, "stopper_fd")
        return fd

    # -- workers
    def join(self, timeout: Optional[float] = None) -> bool:
        """Stops it, then waits until every worker (thread inside it) has exited.  True when
        all exited, False on time-out.  RuntimeError when called by one of its workers."""
        ns = _timeout_ns(timeout)
        st = _deferring(_n.stopper_join, self._h, ns)
        _raise_deferred_now()
        return _n.check(st, "stopper_join") == _n.OK

    # -- processes
    def watch_process(self, process: Any, grace: Optional[float] = None) -> None:
        """When this stopper stops, asks ``process`` to end with ``SIGTERM``, then kills it
        with ``SIGKILL`` if it still runs ``grace`` seconds later (``None``: never killed).

        The recipe's ``p.terminate()``, ``p.join(timeout)``, ``p.kill()`` as one call that
        runs by itself on the stop — after the cooperative stop (a shared stopper the process
        waits on) had its chance.  ``process`` is a pid (``int``), a
        :class:`multiprocessing.Process` or a :class:`subprocess.Popen`.  The signals go
        through a pidfd opened now, so a pid that is reaped and reused later is never hit;
        the process is not reaped (``join()``/``wait()`` still work and give its exit code).

        Returns None.  A process that already ended (or a Process/Popen already joined) is
        nothing to do.  If this stopper is already stopped, the escalation starts at once:
        ``SIGTERM`` now, ``SIGKILL`` after ``grace``.  Raises :class:`TypeError` for another
        type, :class:`ValueError` for a pid <= 0 or a Process not started, a negative or NaN
        ``grace``; :class:`OSError` when the pidfd cannot be opened.  Each call adds one watch.
        """
        pid, what = _p.process_arg(process)
        ns = _timeout_ns(grace, "grace")
        if pid is None:
            return  # it already ended: its pid may be another process's by now
        ctypes.set_errno(0)
        st = _n.stopper_watch_process(self._h, pid, ns)
        if st == _n.EOS:
            err = ctypes.get_errno()
            raise OSError(err, f"watch_process({what}): cannot open a pidfd: {os.strerror(err)}")
        _n.check(st, "stopper_watch_process")

    def stop_on_signal(self, signum: int) -> None:
        """Stops this stopper with :data:`stopper.REASON_SIGNAL` when the process receives
        ``signum`` (e.g. ``signal.SIGTERM``): a clean shutdown on ``kill <pid>`` or from a
        supervisor, reaching every thread (and process) that waits on it.

        The handler is the library's, installed at the C level: it only does
        async-signal-safe work; the stop, with its callbacks, runs on the library's service
        thread, even while the main thread is blocked in C code (no need to come back to
        the interpreter, unlike :func:`signal.signal` handlers).  The stopper (and the
        callbacks registered through this object) stays alive until it stops.  Does
        nothing if it is already stopped.  Several stoppers may stop on one signal.

        The library never takes a signal that already has a handler, so :class:`ValueError`
        is raised for one with a handler or ``SIG_IGN`` — which includes ``SIGINT``: CPython
        installs its ``KeyboardInterrupt`` handler at start-up.  Use it for ``SIGTERM``,
        ``SIGHUP``, ``SIGUSR1``…, or hand a signal over first with
        ``signal.signal(signum, signal.SIG_DFL)``.  The handler is installed below Python:
        ``signal.getsignal`` still reports what Python last set (``SIG_DFL``), and a later
        ``signal.signal(signum, ...)`` replaces the library's handler.  Also
        :class:`ValueError` for ``SIGKILL``, ``SIGSTOP``, the fault signals (``SIGSEGV``…)
        and numbers out of range; :class:`TypeError` for a non-int.
        """
        signo = _p.signal_arg(signum)
        h = self._h
        if self.is_set():
            return
        if _exiting:
            raise RuntimeError("stopper: the interpreter is exiting; no new signal stop can be registered")
        added = None
        if h is not None and h not in _kept:
            # A sentinel callback drops the keep-alive once the stop has happened.
            key = _keys()
            cb = _Callback(_KEEP, h, self._keys)
            _callbacks[key] = cb
            self._keys.append(key)
            _kept[h] = [self, key]
            st = _n.stopper_on_stop(h, _CB_TRAMP, key, byref(cb.id))
            if st != _n.OK:  # stopped meanwhile: the sentinel ran (or nothing to keep)
                _callbacks.pop(key, None)
                _discard(self._keys, key)
                _kept.pop(h, None)
                _n.check(st, "stopper_on_stop")
                return
            added = (key, cb)
        st = _n.stopper_stop_on_signal(h, signo)
        if st != _n.OK and added is not None:
            key, cb = added
            _n.stopper_unregister(h, cb.id)
            _callbacks.pop(key, None)
            _discard(self._keys, key)
            _kept.pop(h, None)
        if st == _n.EINVAL and h is not None:
            _p.fail_signal(signo)
        _n.check(st, "stopper_stop_on_signal")

    def __enter__(self) -> "Stopper":
        ts = _state()
        h = self._h
        barrier = _Entry(None, None, _NOOP)
        entry = _Entry(self, None, _partial(_n.stopper_exit, h))
        # One C call: the native enter and the push are never separated.
        st = list(map(_CALL, (_partial(_n.stopper_enter, h, None), _partial(ts.stack.extend, (barrier, entry)))))[0]
        if st < 0:
            del ts.stack[-2:]
            _n.fail(st, "stopper_enter")
        return self

    def __exit__(self, *exc: Any) -> None:
        ts = _state()
        stack = ts.stack
        for i in range(len(stack) - 1, 0, -1):
            if stack[i].stopper is self and stack[i].scope is None:
                _deque(map(_CLOSE, iter(stack.pop, stack[i - 1])), 0)
                return
        raise RuntimeError("stopper: __exit__ without a matching __enter__ on this thread")

    def __repr__(self) -> str:
        state = f"stopped, reason={self.reason}" if self.is_set() else "running"
        return f"<stopper.Stopper {state}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Stopper):
            return self._h == other._h
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._h)

    def __reduce__(self) -> Any:
        raise TypeError("a Stopper cannot be pickled (it is a handle to native memory)")


class StopHandle:
    """What :meth:`Stopper.on_stop` returns: ``cancel()`` unregisters the callback."""

    __slots__ = ("_stopper", "_key", "_cb", "_registered")

    def __init__(self, stopper: Stopper, key: int, cb: _Callback, registered: bool) -> None:
        self._stopper = stopper
        self._key = key
        self._cb = cb
        self._registered = registered

    def cancel(self) -> bool:
        """Unregisters the callback.  True if it was removed before it ran (it never will);
        False if it has run (when it is running on another thread, waits until it returns)."""
        if not self._registered:
            return False
        self._registered = False
        s = self._stopper
        st = _n.stopper_unregister(s._h, self._cb.id)
        _callbacks.pop(self._key, None)
        _discard(s._keys, self._key)
        if st == _n.OK:
            return True
        if st == _n.STOPPED:
            return False
        if st == _n.EINVAL and s.is_set():
            return False
        if st == _n.EINVAL:
            return False  # already removed (e.g. at interpreter exit)
        _n.check(st, "stopper_unregister")
        return False

    @property
    def registered(self) -> bool:
        """True until cancelled or run."""
        return self._registered and self._key in _callbacks


class _Combined:
    """A native stopper handle for a call that takes one stopper: ``s`` itself, or a linked
    stopper over ``s`` and the thread's active interruptible scopes (released afterwards)."""

    __slots__ = ("hs", "tmp")

    def __init__(self, s: Optional[Stopper], scopes: List[_Interrupt]) -> None:
        hs: List[Optional[int]] = [] if s is None else [s._h]
        for sc in scopes:
            if sc.handle not in hs:
                hs.append(sc.handle)
        self.hs = hs
        self.tmp: Optional[int] = None

    def __enter__(self) -> Optional[int]:
        if len(self.hs) <= 1:
            return self.hs[0] if self.hs else None
        self.tmp = _n.stopper_new_linked(_n.handles_array(self.hs), len(self.hs))
        if not self.tmp:
            raise MemoryError("stopper_new_linked: out of memory")
        return self.tmp

    def __exit__(self, *exc: Any) -> None:
        if self.tmp:
            _n.stopper_release(self.tmp)
            self.tmp = None


# ---------------------------------------------------------------- module functions
def current() -> Optional[Stopper]:
    """The calling thread's innermost entered stopper (``with s:``, a StoppableThread's
    run()), or None."""
    h = _n.stopper_current()
    if not h:
        return None
    ts = _state()
    for e in reversed(ts.stack):
        if e.stopper is not None:
            if e.stopper._h == h:
                return e.stopper
            break
    # entered by native code: a new reference of our own
    return Stopper._wrap(_n.stopper_retain(h), "stopper_retain")


def wait_any(stoppers: Iterable[Stopper], timeout: Optional[float] = None) -> Optional[int]:
    """Waits until one of ``stoppers`` is stopped: returns its index, or None after
    ``timeout`` seconds.  With no stoppers, sleeps ``timeout`` (ValueError without one)."""
    if isinstance(stoppers, Stopper):
        raise TypeError("wait_any takes a sequence of stoppers, not a single Stopper")
    try:
        items = list(stoppers)
    except TypeError:
        raise TypeError(f"wait_any takes a sequence of stoppers, not {type(stoppers).__name__}") from None
    for s in items:
        _stopper_arg(s, "each item of stoppers")
    ns = _timeout_ns(timeout)
    if not items and ns < 0:
        raise ValueError("wait_any() of no stoppers with no timeout would block forever")
    ts = _state()
    scopes = _active_scopes(ts) if ts.stack else []
    handles = [s._h for s in items] + [sc.handle for sc in scopes]
    which = c_size_t(0)
    if handles:
        st = _n.stopper_wait_any(_n.handles_array(handles), len(handles), ns, byref(which))
    else:
        st = _n.stopper_wait(None, ns)
    _n.check(st, "stopper_wait_any")
    if scopes:
        _raise_if_interrupted(ts, scopes)
    if st == _n.STOPPED:
        i = int(which.value)
        if i < len(items):
            return i
        for j, s in enumerate(items):
            if s.is_set():
                return j
    return None


# ---------------------------------------------------------------- timeout()
class _TimeoutScope(io.IOBase):
    """What :func:`timeout` returns: a context manager and a decorator.

    It derives from :class:`io.IOBase` only to inherit a C-level ``__exit__`` (which calls
    ``self.close()``, here an instance attribute holding the C-level exit chain): a Python
    ``__exit__`` could itself be interrupted by the very exception it must clean up after.
    It is not a file.
    """

    # io.IOBase's finalizer calls close(): keep the class-level one C-level and harmless.
    close = _NOOP  # type: ignore[assignment]

    def __init__(self, seconds: Optional[float]) -> None:
        self._ns = _timeout_ns(seconds, "seconds")
        self.seconds = seconds
        self._stopper: Optional[Stopper] = None
        self._thread: Optional[int] = None

    @property
    def expired(self) -> bool:
        """True when the time limit passed inside the (last) block."""
        s = self._stopper
        return s is not None and s.is_set()

    def __enter__(self) -> "_TimeoutScope":
        if self._thread is not None:
            raise RuntimeError("this timeout() is already in use: create one per block")
        if _exiting:
            raise RuntimeError("stopper: the interpreter is exiting; timeout() cannot arm a deadline")
        ts = _state()
        s = Stopper()
        h = s._h
        sc = _Interrupt(s, ts, Timeout)
        key = _keys()
        cb = _Callback(None, h, None, sc)
        barrier = _Entry(None, None, _NOOP)
        teardown: Callable[[], Any] = _partial(
            _deque,
            map(
                _CALL,
                (
                    _partial(_n.stopper_stop_after, h, -1, 0),
                    _partial(_n.stopper_unregister, h, cb.id),  # waits for a delivery in progress
                    _partial(setattr, sc, "active", False),
                    _partial(_callbacks.pop, key, None),
                ),
            ),
            0,
        )
        entry = _Entry(None, sc, teardown)
        self._stopper = s
        self._thread = ts.ident
        d = self.__dict__
        d["close"] = _exit_chain(
            ts, barrier, sc, (_partial(d.__setitem__, "_thread", None), _partial(d.pop, "close", None))
        )
        steps = [
            _partial(setattr, sc, "active", True),
            _partial(_callbacks.__setitem__, key, cb),
            _partial(ts.stack.extend, (barrier, entry)),
            _partial(_n.stopper_on_stop, h, _CB_TRAMP, key, byref(cb.id)),
        ]
        if self._ns >= 0:
            steps.append(_partial(_n.stopper_stop_after, h, self._ns, _n.REASON_DEADLINE))
        try:
            list(map(_CALL, steps))
        except BaseException:
            # The deadline fired before the block began (or another stop arrived): leave
            # cleanly (C-level call, no check before it), then let the exception out.
            self.close()
            raise
        return self

    def __call__(self, fn: F) -> F:
        """Decorator form: each call of ``fn`` runs under a fresh ``timeout(seconds)``."""
        if not callable(fn):
            raise TypeError("timeout() decorates a callable")
        seconds = self.seconds

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _TimeoutScope(seconds):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"<stopper.timeout seconds={self.seconds!r} expired={self.expired}>"


def timeout(seconds: Optional[float]) -> _TimeoutScope:
    """Raises :class:`stopper.Timeout` in this thread when ``seconds`` pass inside the block.

    A context manager (``with stopper.timeout(2): ...``) and a decorator
    (``@stopper.timeout(2)``).  The exception reaches Python code (a busy loop, a function
    call) and every stopper wait at once; it never fires after the block has exited.  It
    cannot interrupt C code that does not return to Python (``time.sleep``, ``socket.recv``):
    use stopper waits there.  ``None``: no limit.
    """
    return _TimeoutScope(seconds)


# ---------------------------------------------------------------- interpreter exit
def _at_exit() -> None:
    """Runs before finalization: after it, the library never calls into Python again."""
    global _exiting
    _exiting = True
    # 0. Hold every live object until the end: a stop running on another thread meanwhile (a
    #    signal's, on the service thread) may drop the last reference to one (its keep-alive in
    #    _kept), and that object's finalizer must not release the native stopper while step 2
    #    below is inside stopper_unregister of it.
    hold = [wr() for wr in list(_live.values())]  # noqa: F841 - a reference, held on purpose
    # 1. Disarm the deadlines we armed; a stop already firing is waited for (its sentinel
    #    callback runs after every hook and child of that stop).
    for h, a in list(_armed.items()):
        _n.stopper_stop_after(h, -1, 0)
    for h, a in list(_armed.items()):
        if a[0].is_set():
            a[2].wait(2.0)
    _armed.clear()
    # 2. Unregister every callback (waits for one running on another thread).
    for key, cb in list(_callbacks.items()):
        if cb.handle:
            _n.stopper_unregister(cb.handle, cb.id)
        _callbacks.pop(key, None)
    _interrupts.clear()
    _kept.clear()
    # 2b. Wait (bounded) for callbacks running on other threads right now (a stop from a
    #     signal or another process runs them on a native thread): one that released the GIL
    #     (a ctypes call, a sleep) must be done before finalization, or CPython would end that
    #     native thread from under the library when it takes the GIL back.
    give_up = time.monotonic() + 2.0
    while _running and time.monotonic() < give_up:
        time.sleep(0.001)
    # 3. Release what is still alive, exactly once, when no other Python thread could still
    #    be using it; otherwise leave it to the operating system.
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not isinstance(t, threading._DummyThread)]  # type: ignore[attr-defined]
    if others or threading.current_thread() is not threading.main_thread():
        return
    for key, wr in list(_live.items()):
        obj = wr()
        fin = _finalizers.get(key)
        if obj is not None and fin is not None:
            obj._detach()
            fin(None)


atexit.register(_at_exit)
