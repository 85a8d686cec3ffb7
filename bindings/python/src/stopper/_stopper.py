"""The Stopper type: a stop token whose waits wake at once, with its handle and module
functions (current, wait_any).  Its waits are checkpoints (see :mod:`stopper._delivery`)."""

from __future__ import annotations

import ctypes
import os
import threading
from ctypes import byref, c_int16, c_size_t
TYPE_CHECKING = False  # typing is not imported at run time: `import stopper` stays light
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, List, Optional

from . import _delivery as _d
from . import _lifecycle as _lc
from . import _native as _n
from . import _process as _p
from ._args import fd_arg as _fd_arg
from ._args import reason_arg as _reason_arg
from ._args import timeout_ns as _timeout_ns
from ._errors import StopRequested

__all__ = ["Stopper", "StopHandle", "current", "wait_any"]

from functools import partial as _partial


def _stopper_arg(s: Any, what: str = "stopper") -> "Stopper":
    if not isinstance(s, Stopper):
        raise TypeError(f"{what} must be a stopper.Stopper, not {type(s).__name__}")
    return s


# ---------------------------------------------------------------- Stopper


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
        self._keys: list = _lc.new_keys()
        _lc.register_finalizer(self, [_lc.unregister_keys_step(h, self._keys), _partial(_n.stopper_release, h)])

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
        if _d.outside_scopes():
            st = _n.stopper_stop(self._h, r)
        else:
            with _d.shield():  # callbacks run here are never interrupted; a stop of this
                st = _n.stopper_stop(self._h, r)  # thread's async scope is raised after them
        if st < 0:
            _n.fail(st, "stopper_stop")
        return st == 1

    # -- waits
    def wait(self, timeout: Optional[float] = None) -> bool:
        """Blocks until stopped or until ``timeout`` seconds passed (None: no limit), like
        :meth:`threading.Event.wait`: returns True once stopped, False on time-out.  Releases
        the GIL.  Inside an interruptible scope that stops, raises its exception at once."""
        ns = _timeout_ns(timeout)
        cp = _d.checkpoint_stopper()
        if cp is None:
            st = _n.stopper_wait(self._h, ns)
        else:
            with _d.in_checkpoint():
                st = _n.stopper_wait_any(_n.handles_array([self._h, cp._h]), 2, ns, None)
        return _n.check(st, "stopper_wait") == _n.STOPPED

    async def wait_async(self, timeout: Optional[float] = None) -> bool:
        """Awaits the stop in asyncio through :meth:`fileno` (``loop.add_reader``): no
        thread per waiter (all waiters of one stopper in one loop share one reader).
        Returns True once stopped, False after ``timeout`` seconds."""
        from ._asyncwait import wait_async  # asyncio only for those who use it

        return await wait_async(self, timeout)

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
        cp = _d.checkpoint_stopper()
        revents = c_int16(0)
        if cp is None:
            st = _n.stopper_wait_fd(self._h, fd, events, ns, byref(revents))
        else:
            with _d.in_checkpoint(), one_handle(self, cp) as h:
                st = _n.stopper_wait_fd(h, fd, events, ns, byref(revents))
        if _n.check(st, "stopper_wait_fd") == _n.STOPPED:
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
        with _d.quiet():  # bookkeeping: the keep-alive and the native deadline go together
            return self._arm(seconds, r)

    def _arm(self, seconds: Optional[float], r: int) -> bool:
        h = self._h
        if seconds is None:
            _n.check(_n.stopper_stop_after(h, -1, 0), "stopper_stop_after")
            a = _lc.armed.pop(h, None) if h else None
            if a is not None:
                cb = _lc.callbacks.pop(a[1], None)
                _lc.discard(self._keys, a[1])
                if cb is not None:
                    _n.stopper_unregister(h, cb.id)
            return not self.is_set()
        ns = _timeout_ns(seconds, "seconds")
        if _lc.exiting:
            raise RuntimeError("stopper: the interpreter is exiting; no new deadline can be armed")
        if h is not None and h not in _lc.armed:
            # A sentinel callback tells when the stop the deadline causes has completed.
            key = _lc.new_key()
            cb = _lc.Callback(_lc.SENTINEL, h, self._keys)
            _lc.callbacks[key] = cb
            self._keys.append(key)
            _lc.armed[h] = [self, key, threading.Event()]
            st = _n.stopper_on_stop(h, _lc.CB_TRAMP, key, byref(cb.id))
            if st != _n.OK:
                _lc.callbacks.pop(key, None)
                _lc.discard(self._keys, key)
                _lc.armed.pop(h, None)
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
        if _lc.exiting:
            raise RuntimeError("stopper: the interpreter is exiting; no new callback can be registered")
        h = self._h
        key = _lc.new_key()
        cb = _lc.Callback(fn, h, self._keys)
        with _d.shield():  # bookkeeping, and fn may run here at once
            _lc.callbacks[key] = cb
            self._keys.append(key)
            st = _n.stopper_on_stop(h, _lc.CB_TRAMP, key, byref(cb.id))
            if st != _n.OK:
                _lc.callbacks.pop(key, None)
                _lc.discard(self._keys, key)
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
        with _d.shield():
            st = _n.stopper_join(self._h, ns)
        return _n.check(st, "stopper_join") == _n.OK

    # -- processes
    def watch_process(self, process: Any, grace: Optional[float] = None, *, group: bool = False) -> None:
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

        ``group=True``: the same for the whole process group that ``process`` leads (started
        with ``start_new_session=True`` or ``process_group=0``): ``SIGTERM`` to every member,
        ``SIGKILL`` to what remains after ``grace``, through the leader's pidfd with
        ``PIDFD_SIGNAL_PROCESS_GROUP`` (Linux 6.9 and later; :class:`OSError` ``EINVAL`` before,
        never a racy ``killpg``).  :class:`ValueError` when ``process`` does not lead its group.
        """
        pid, what = _p.process_arg(process)
        ns = _timeout_ns(grace, "grace")
        if pid is None:
            return  # it already ended: its pid may be another process's by now
        ctypes.set_errno(0)
        watch = _n.stopper_watch_process_group if group else _n.stopper_watch_process
        st = watch(self._h, pid, ns)
        if st == _n.EINVAL and group:
            raise ValueError(f"watch_process({what}, group=True): it does not lead its process group")
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
        with _d.quiet():
            self._on_signal(signo)

    def _on_signal(self, signo: int) -> None:
        h = self._h
        if self.is_set():
            return
        if _lc.exiting:
            raise RuntimeError("stopper: the interpreter is exiting; no new signal stop can be registered")
        added = None
        if h is not None and h not in _lc.kept:
            # A sentinel callback drops the keep-alive once the stop has happened.
            key = _lc.new_key()
            cb = _lc.Callback(_lc.KEEP, h, self._keys)
            _lc.callbacks[key] = cb
            self._keys.append(key)
            _lc.kept[h] = [self, key]
            st = _n.stopper_on_stop(h, _lc.CB_TRAMP, key, byref(cb.id))
            if st != _n.OK:  # stopped meanwhile: the sentinel ran (or nothing to keep)
                _lc.callbacks.pop(key, None)
                _lc.discard(self._keys, key)
                _lc.kept.pop(h, None)
                _n.check(st, "stopper_on_stop")
                return
            added = (key, cb)
        st = _n.stopper_stop_on_signal(h, signo)
        if st != _n.OK and added is not None:
            key, cb = added
            _n.stopper_unregister(h, cb.id)
            _lc.callbacks.pop(key, None)
            _lc.discard(self._keys, key)
            _lc.kept.pop(h, None)
        if st == _n.EINVAL and h is not None:
            _p.fail_signal(signo)
        _n.check(st, "stopper_stop_on_signal")

    def __enter__(self) -> "Stopper":
        _d.enter(self, None)
        return self

    def __exit__(self, *exc: Any) -> None:
        ts = _d.state()
        for e in reversed(ts.stack):
            if e.stopper is self and e.mode is None:
                _d.leave(e)
                return
        raise RuntimeError("stopper: __exit__ without a matching __enter__ on this thread")

    def interruptible(self, mode: Any = "checkpoint") -> "_d.Scope":
        """``with s.interruptible(mode):`` makes the calling thread (any thread: a pool thread,
        the main thread) a worker of ``s`` that a stop of ``s`` interrupts: at checkpoints
        (``"checkpoint"``) or anywhere Python code runs (``"async"``, or True).  Inside,
        :func:`stopper.current` is ``s``.  Unknown modes raise ValueError."""
        return _d.Scope(self, _d.mode_arg(mode), Stopper.linked)

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
        with _d.quiet():
            st = _n.stopper_unregister(s._h, self._cb.id)
            _lc.callbacks.pop(self._key, None)
            _lc.discard(s._keys, self._key)
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
        return self._registered and self._key in _lc.callbacks


class one_handle:
    """``with one_handle(s, cp) as h``: a native handle stopped when ``s`` (or None) or ``cp``
    is: one of them, or a linked stopper released afterwards."""

    __slots__ = ("hs", "tmp")

    def __init__(self, s: Optional[Stopper], cp: Optional[Stopper]) -> None:
        hs = [x._h for x in (s, cp) if x is not None]
        self.hs = hs if len(hs) < 2 or hs[0] != hs[1] else hs[:1]
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


def _later(fn: Callable[[], Any]) -> None:
    """Calls ``fn()`` about a millisecond from now, from the library's service thread."""
    k = Stopper()
    k.on_stop(lambda reason: fn())
    k.stop_after(0.001)  # the armed deadline keeps k alive until it fires


_d.later = _later


# ---------------------------------------------------------------- module functions
def current() -> Optional[Stopper]:
    """The calling thread's innermost entered stopper (``with s:``, a StoppableThread's
    run()), or None."""
    h = _n.stopper_current()
    if not h:
        return None
    ts = _d.state()
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
    cp = _d.checkpoint_stopper()
    handles = [s._h for s in items] + ([] if cp is None else [cp._h])
    which = c_size_t(0)
    if cp is not None:
        with _d.in_checkpoint():
            st = _n.stopper_wait_any(_n.handles_array(handles), len(handles), ns, byref(which))
    elif handles:
        st = _n.stopper_wait_any(_n.handles_array(handles), len(handles), ns, byref(which))
    else:
        st = _n.stopper_wait(None, ns)
    _n.check(st, "stopper_wait_any")
    if st == _n.STOPPED:
        i = int(which.value)
        if i < len(items):
            return i
        for j, s in enumerate(items):
            if s.is_set():
                return j
    return None

