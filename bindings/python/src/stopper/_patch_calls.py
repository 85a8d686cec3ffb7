"""The patched calls of ``stopper.patch()`` (loaded by its first call: imports socket,
selectors, subprocess...), and the table of what replaces what.

Every patched call starts with one thread-local read, ``checkpoint_stopper()``.  When it is None
(the thread is in no interruptible scope, or in a shield) the call goes straight to the
original, with the same arguments: nothing else changes for that thread.  Inside a scope the
call waits for what it waits for *or* the scope's stop, with a real primitive each time:

* ``time.sleep``: ``Stopper.wait``.
* locks: ``threading.Lock``/``RLock``/``_allocate_lock`` make ``stopper.sync`` locks, so
  ``Condition``, ``Event``, ``Semaphore``, ``Barrier`` and ``queue.Queue`` made after the patch
  wait on them; ``threading.Condition.wait`` itself is the ``stopper.sync`` one (its waiter
  locks are stoppable, so also conditions made before the patch wake on a stop).
* ``Thread.join``: a native stopper per thread, stopped when its ``run`` has ended (threads
  started after the patch; for an older thread, one helper thread that joins it).
* sockets: wait for readiness and the stop together (``Stopper.wait_readable/wait_writable``,
  poll on the stopper's descriptor), then the real call with ``MSG_DONTWAIT``, so a readiness
  that another thread consumed means waiting again, never blocking uninterruptibly.  The
  socket's own timeout and blocking mode are kept: a non-blocking socket never waits, one with a
  timeout raises ``socket.timeout`` as it would.
* ``select.select``, ``select.poll().poll``, ``selectors`` ``select``: the stopper's descriptor is
  waited on too, and removed from what the caller sees.
* ``subprocess.Popen.wait``: a pidfd polled with the stop; ``communicate`` reads its pipes
  through the (patched) selectors.  ``subprocess.run`` kills its child on any exception, then
  waits for it: a wait for a child this ``Popen`` has already killed is not interrupted (SIGKILL
  ends it at once), so the child is reaped, not left a zombie.

Code that bound a name before the patch (``from time import sleep``) keeps the original:
patch first.
"""

from __future__ import annotations

import _thread
import ctypes
import errno
import os
import select
import selectors
import socket
import subprocess
import threading
import time
from typing import Any, Callable, List, Optional, Tuple

from . import sync
from ._stopper import Stopper, wait_any
from ._errors import StopRequested

from . import _delivery
from ._delivery import in_checkpoint

__all__ = ["replacements"]

# The hot path of every patched call: ``_local.cp`` is what ``checkpoint_stopper()`` returns
# (the delivery machinery's thread-local), read inline to save a Python call per call.
_local = _delivery._tls
_monotonic = time.monotonic
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)


# ---------------------------------------------------------------- time, threading
_orig_sleep = time.sleep


def _sleep(seconds: float) -> None:
    s = _local.cp
    if s is None:
        return _orig_sleep(seconds)
    sync.sleep(seconds)


_orig_cond_wait = threading.Condition.wait
_orig_join = threading.Thread.join
_orig_bootstrap_inner = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]


def _cond_wait(self: Any, timeout: Optional[float] = None) -> bool:
    if _local.cp is None:
        return _orig_cond_wait(self, timeout)
    return sync.Condition.wait(self, timeout)  # the same fields, and a stoppable waiter lock


def _bootstrap_inner(self: threading.Thread) -> None:
    self._stopper_ended = ended = Stopper()  # type: ignore[attr-defined]  # before start() returns
    try:
        _orig_bootstrap_inner(self)
    finally:
        ended.stop()


def _join(self: threading.Thread, timeout: Optional[float] = None) -> None:
    s = _local.cp
    if s is None or not self._started.is_set() or self is threading.current_thread():  # type: ignore[attr-defined]
        return _orig_join(self, timeout)  # (also raises what join raises for those)
    ended = getattr(self, "_stopper_ended", None)
    if ended is None:  # started before the patch: one helper thread joins it for us
        ended = Stopper()
        _thread.start_new_thread(_join_then_stop, (self, ended))
    with in_checkpoint():
        wait_any((ended, s), timeout)
    if ended.is_set():
        _orig_join(self)  # run() has returned: this only waits for the thread's last C steps


def _join_then_stop(t: threading.Thread, ended: Stopper) -> None:
    _orig_join(t)
    ended.stop()


# ---------------------------------------------------------------- sockets
_sock = socket.socket


def _timeout_error() -> OSError:
    return socket.timeout("timed out")


def _left(deadline: Optional[float]) -> Optional[float]:
    if deadline is None:
        return None
    return max(0.0, deadline - _monotonic())


def _io(sock: Any, s: Stopper, writable: bool, call: Callable[[], Any]) -> Any:
    """Waits until ``sock`` is ready or ``s`` stops (raising), then ``call()`` (a non-blocking
    attempt); again while the attempt would block; ``socket.timeout`` after the socket's own
    timeout."""
    t = sock.gettimeout()
    deadline = None if t is None else _monotonic() + t
    wait = s.wait_writable if writable else s.wait_readable
    while True:
        with in_checkpoint():
            ready = wait(sock, _left(deadline))
        if not ready:
            raise _timeout_error()
        try:
            return call()
        except (BlockingIOError, InterruptedError):
            continue  # someone else took the readiness: wait again


def _recv(self: Any, bufsize: int, flags: int = 0) -> bytes:
    s = _local.cp
    if s is None or self.gettimeout() == 0.0:
        return _sock_recv(self, bufsize, flags)
    return _io(self, s, False, lambda: _sock_recv(self, bufsize, flags | _DONTWAIT))


def _recv_into(self: Any, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
    s = _local.cp
    if s is None or self.gettimeout() == 0.0:
        return _sock_recv_into(self, buffer, nbytes, flags)
    return _io(self, s, False, lambda: _sock_recv_into(self, buffer, nbytes, flags | _DONTWAIT))


def _recvfrom(self: Any, bufsize: int, flags: int = 0) -> Any:
    s = _local.cp
    if s is None or self.gettimeout() == 0.0:
        return _sock_recvfrom(self, bufsize, flags)
    return _io(self, s, False, lambda: _sock_recvfrom(self, bufsize, flags | _DONTWAIT))


def _send(self: Any, data: Any, flags: int = 0) -> int:
    s = _local.cp
    if s is None or self.gettimeout() == 0.0:
        return _sock_send(self, data, flags)
    return _io(self, s, True, lambda: _sock_send(self, data, flags | _DONTWAIT))


def _sendto(self: Any, data: Any, *args: Any) -> int:
    s = _local.cp
    if s is None or self.gettimeout() == 0.0:
        return _sock_sendto(self, data, *args)
    if len(args) == 1:
        flags, address = 0, args[0]
    elif len(args) == 2:
        flags, address = args
    else:
        return _sock_sendto(self, data, *args)  # the original's TypeError
    return _io(self, s, True, lambda: _sock_sendto(self, data, flags | _DONTWAIT, address))


def _sendall(self: Any, data: Any, flags: int = 0) -> None:
    s = _local.cp
    if s is None or self.gettimeout() == 0.0:
        return _sock_sendall(self, data, flags)
    view = memoryview(data).cast("B")
    t = self.gettimeout()
    deadline = None if t is None else _monotonic() + t
    sent = 0
    while sent < len(view):
        with in_checkpoint():
            ready = s.wait_writable(self, _left(deadline))
        if not ready:
            raise _timeout_error()
        try:
            sent += _sock_send(self, view[sent:], flags | _DONTWAIT)
        except (BlockingIOError, InterruptedError):
            continue
    return None


def _accept(self: Any) -> Any:
    s = _local.cp
    if s is None or self.gettimeout() == 0.0:
        return _sock_accept(self)
    t = self.gettimeout()
    with in_checkpoint():
        ready = s.wait_readable(self, t)
    if not ready:
        raise _timeout_error()
    return _sock_accept(self)  # ready: returns at once (unless another thread took it)


def _connect(self: Any, address: Any) -> None:
    s = _local.cp
    t = self.gettimeout()
    if s is None or t == 0.0:
        return _sock_connect(self, address)
    # start it non-blocking, wait for it (or the stop), then put the socket's mode back
    self.setblocking(False)
    try:
        err = self.connect_ex(address)
        if err in (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK):
            with in_checkpoint():
                ready = s.wait_writable(self, t)
            if not ready:
                raise _timeout_error()
            err = self.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
    finally:
        self.settimeout(t)


_sock_recv = _sock.recv
_sock_recv_into = _sock.recv_into
_sock_recvfrom = _sock.recvfrom
_sock_send = _sock.send
_sock_sendto = _sock.sendto
_sock_sendall = _sock.sendall
_sock_accept = _sock.accept
_sock_connect = _sock.connect


# ---------------------------------------------------------------- select, poll, selectors
class _StopFd:
    """The stopper's descriptor as an item of a select() list (found again by identity)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


_orig_select = select.select


def _select(rlist: Any, wlist: Any, xlist: Any, timeout: Optional[float] = None) -> Any:
    s = _local.cp
    if s is None:
        return _orig_select(rlist, wlist, xlist, timeout)
    marker = _StopFd(s.fileno())
    with in_checkpoint():
        r, w, x = _orig_select(list(rlist) + [marker], wlist, xlist, timeout)
    return [f for f in r if f is not marker], w, x


_orig_poll = select.poll


class _Poll:
    """What the patched ``select.poll()`` returns: the C poll object, whose ``poll`` also wakes
    on the stop inside a scope."""

    __slots__ = ("_p", "__weakref__")

    def __init__(self) -> None:
        self._p = _orig_poll()

    def register(self, fd: Any, eventmask: int = select.POLLIN | select.POLLPRI | select.POLLOUT) -> None:
        self._p.register(fd, eventmask)

    def modify(self, fd: Any, eventmask: int) -> None:
        self._p.modify(fd, eventmask)

    def unregister(self, fd: Any) -> None:
        self._p.unregister(fd)

    def poll(self, timeout: Optional[float] = None) -> List[Tuple[int, int]]:
        s = _local.cp
        if s is None:
            return self._p.poll(timeout)
        fd = s.fileno()
        self._p.register(fd, select.POLLIN)
        try:
            with in_checkpoint():
                events = self._p.poll(timeout)
        finally:
            self._p.unregister(fd)
        return [e for e in events if e[0] != fd]


def _selector_select(original: Callable[..., Any]) -> Callable[..., Any]:
    """A ``select`` for a selectors class: the stopper's descriptor is registered with the
    underlying select/poll/epoll for the call only, and the selector (which ignores descriptors
    it does not know) never reports it."""

    def select(self: Any, timeout: Optional[float] = None) -> Any:
        s = _local.cp
        if s is None:
            return original(self, timeout)
        fd = s.fileno()
        if fd in self._fd_to_key:  # the caller watches the stop itself (asyncio's wait_async)
            with in_checkpoint():
                return original(self, timeout)
        readers = getattr(self, "_readers", None)
        if readers is not None:  # SelectSelector
            readers.add(fd)
        else:
            self._selector.register(fd, self._EVENT_READ)
        try:
            with in_checkpoint():
                return original(self, timeout)
        finally:
            if readers is not None:
                readers.discard(fd)
            else:
                self._selector.unregister(fd)

    select.__doc__ = original.__doc__
    select.__wrapped__ = original  # type: ignore[attr-defined]
    return select


def _selector_classes() -> List[type]:
    out = []
    for name in ("SelectSelector", "_PollLikeSelector", "EpollSelector", "DevpollSelector"):
        cls = getattr(selectors, name, None)
        if cls is not None and "select" in cls.__dict__:
            out.append(cls)
    return out


# ---------------------------------------------------------------- subprocess
_Popen = subprocess.Popen
_orig_popen_wait = _Popen.wait
_orig_communicate = _Popen.communicate
_orig_kill = _Popen.kill
_NR_PIDFD_OPEN = 434  # the same on every Linux architecture (asm-generic numbering)


def _pidfd_open(pid: int) -> int:
    opener = getattr(os, "pidfd_open", None)
    if opener is not None:
        return opener(pid)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(_NR_PIDFD_OPEN, pid, 0)
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return fd


def _popen_wait(self: Any, timeout: Optional[float] = None) -> Any:
    s = _local.cp
    if s is None or self.returncode is not None or getattr(self, "_stopper_killed", False):
        return _orig_popen_wait(self, timeout)
    if self.poll() is not None:
        return self.returncode
    try:
        pidfd = _pidfd_open(self.pid)
    except OSError:  # reaped meanwhile by another thread
        return _orig_popen_wait(self, timeout)
    try:
        with in_checkpoint():
            ended = s.wait_readable(pidfd, timeout)
    finally:
        os.close(pidfd)
    if not ended:
        raise subprocess.TimeoutExpired(self.args, timeout)
    return _orig_popen_wait(self)  # it has exited: reaps it at once


_FOREVER = 86400.0  # communicate's pipe loop needs a timeout to use its selector: a day at a time


def _communicate(self: Any, input: Any = None, timeout: Optional[float] = None) -> Any:
    if _local.cp is None or timeout is not None:
        return _orig_communicate(self, input, timeout)
    while True:  # given a timeout, communicate reads every pipe through the (patched) selector
        try:
            return _orig_communicate(self, input, _FOREVER)
        except subprocess.TimeoutExpired:
            input = None  # already sent; communicate resumes where it stopped


def _kill(self: Any) -> None:
    _orig_kill(self)
    self._stopper_killed = True


# ---------------------------------------------------------------- the table
def replacements() -> List[Tuple[Any, str, Any]]:
    """(owner, attribute name, replacement) for everything patch() swaps."""
    out: List[Tuple[Any, str, Any]] = [
        (time, "sleep", _sleep),
        (threading, "Lock", sync.Lock),
        (threading, "_allocate_lock", sync.Lock),
        (threading, "RLock", sync.RLock),
        (threading.Condition, "wait", _cond_wait),
        (threading.Thread, "join", _join),
        (threading.Thread, "_bootstrap_inner", _bootstrap_inner),
        (_sock, "recv", _recv),
        (_sock, "recv_into", _recv_into),
        (_sock, "recvfrom", _recvfrom),
        (_sock, "send", _send),
        (_sock, "sendto", _sendto),
        (_sock, "sendall", _sendall),
        (_sock, "accept", _accept),
        (_sock, "connect", _connect),
        (select, "select", _select),
        (select, "poll", _Poll),
        (_Popen, "wait", _popen_wait),
        (_Popen, "communicate", _communicate),
        (_Popen, "kill", _kill),
    ]
    for cls in _selector_classes():
        out.append((cls, "select", _selector_select(cls.__dict__["select"])))
    return out
