"""``stopper.subprocess.run``: ``subprocess.run`` whose child's whole process tree ends on a stop.

The child is started in its own session, so it leads a new process group that its children
and grandchildren inherit.  When the stopper stops (the ``stopper=`` given, or an
interruptible scope of the calling thread), the whole group gets ``SIGTERM``; the group gets
``SIGKILL`` when ``grace`` seconds pass, or as soon as the leader (the child) has ended — what
it leaves behind in its group is killed then, since nothing is left to wait for it; the child
is reaped and ``run`` raises :class:`stopper.StopRequested`.

How the group is signalled, and why a reused id is never hit
------------------------------------------------------------
Right after the child starts (while it is our unreaped child, so its pid is certainly its
own), a pidfd of it is opened.  Every signal goes through that pidfd with
``pidfd_send_signal(..., PIDFD_SIGNAL_PROCESS_GROUP)`` (Linux 6.9 and later): the kernel
signals the group *of that very process*, identified by its kernel object, not by a number.
It keeps working after the leader has been reaped (the members still in the group are
reached), and once the group is empty it reaches nothing — a new process or group that
reuses the number is a different object.  ``os.killpg(pid)`` would be racy in exactly those
moments, so it is never used: on an older kernel ``run`` refuses with :class:`OSError`
(``EINVAL``) before starting anything, rather than fall back to it.

A member that left the group (``setsid``/``setpgid``) is out of reach, as with any group kill.
Without a stop, ``run`` behaves as ``subprocess.run`` (``input=``, ``capture_output=``,
``timeout=``, ``check=``…); on a time-out or another exception the whole group is killed,
where ``subprocess.run`` kills only the child.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import math
import os
import signal
import subprocess
import sys
import threading
from subprocess import PIPE, CalledProcessError, CompletedProcess, TimeoutExpired
from typing import Any, Optional

from ._stopper import Stopper
from ._delivery import checkpoint_stopper
from ._errors import StopRequested

__all__ = ["run", "CompletedProcess", "CalledProcessError", "TimeoutExpired", "PIPE"]

PIDFD_SIGNAL_PROCESS_GROUP = 4  # include/uapi/linux/pidfd.h, Linux 6.9
_SYS_PIDFD_SEND_SIGNAL = 424  # the same number on every Linux architecture
_SYS_PIDFD_OPEN = 434

_libc: Any = None


def _syscall(*args: int) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    r = _libc.syscall(*[ctypes.c_long(a) for a in args])
    if r < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(r)


def _pidfd_open(pid: int) -> int:
    if hasattr(os, "pidfd_open"):  # 3.9+
        return os.pidfd_open(pid)
    return _syscall(_SYS_PIDFD_OPEN, pid, 0)


def _signal_group(pidfd: int, sig: int) -> bool:
    """Sends ``sig`` to the process group led by the pidfd's process.  False when nothing is
    left in it (ESRCH)."""
    try:
        if hasattr(signal, "pidfd_send_signal"):  # 3.9+
            signal.pidfd_send_signal(pidfd, sig, None, PIDFD_SIGNAL_PROCESS_GROUP)
        else:
            _syscall(_SYS_PIDFD_SEND_SIGNAL, pidfd, sig, 0, PIDFD_SIGNAL_PROCESS_GROUP)
    except ProcessLookupError:
        return False
    return True


def _shield() -> Any:
    from . import shield

    return shield()


_supported: Optional[bool] = None


def _check_kernel() -> None:
    """Group signals through a pidfd need Linux 6.9: probe once (signal 0 to our own group)."""
    global _supported
    if _supported is None:
        if not sys.platform.startswith("linux"):
            _supported = False
        else:
            try:
                fd = _pidfd_open(os.getpid())
            except OSError:
                _supported = False
            else:
                try:
                    _signal_group(fd, 0)
                    _supported = True
                except OSError:
                    _supported = False
                finally:
                    os.close(fd)
    if not _supported:
        raise OSError(
            errno.EINVAL,
            "stopper.subprocess.run needs Linux 6.9 or later (pidfd_send_signal with "
            "PIDFD_SIGNAL_PROCESS_GROUP): it never falls back to a racy killpg",
        )


class _GroupStop:
    """The escalation for one child's group: SIGTERM on the stop, SIGKILL after ``grace`` (on
    the library's service thread, from a deadline) or when :meth:`finish` is called.  Signals
    are sent under ``lock`` and only while the pidfd is open."""

    def __init__(self, pidfd: int, grace: float) -> None:
        self.pidfd = pidfd
        self.grace = grace
        self.lock = threading.Lock()
        self.fired = False
        self.closed = False
        self.timer: Optional[Stopper] = None
        self.timer_cb: Any = None

    def on_stop(self, reason: int) -> None:
        with self.lock:
            if self.closed or self.fired:
                return
            self.fired = True
            _signal_group(self.pidfd, signal.SIGTERM)
            if self.grace <= 0:
                _signal_group(self.pidfd, signal.SIGKILL)
                return
            self.timer = t = Stopper()
        self.timer_cb = t.on_stop(lambda r: self.kill())
        t.stop_after(self.grace)

    def kill(self) -> None:
        with self.lock:
            if not self.closed:
                _signal_group(self.pidfd, signal.SIGKILL)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            os.close(self.pidfd)
            t, cb = self.timer, self.timer_cb
        if t is not None:
            t.stop_after(None)
        if cb is not None:
            cb.cancel()  # (waits for a kill() in progress)


def _grace_arg(grace: Any) -> float:
    if isinstance(grace, bool) or not isinstance(grace, (int, float)):
        raise TypeError(f"grace must be a number of seconds, not {type(grace).__name__}")
    if math.isnan(grace) or grace < 0:
        raise ValueError(f"grace must be >= 0 seconds, got {grace!r}")
    return float(grace)


def run(*popenargs: Any, stopper: Optional[Stopper] = None, grace: float = 5.0, input: Any = None,
        capture_output: bool = False, timeout: Optional[float] = None, check: bool = False,
        **kwargs: Any) -> CompletedProcess:
    """``subprocess.run`` in its own process group, whose whole group ends on a stop.

    A stop of ``stopper``, or of an interruptible scope of the calling thread, sends
    ``SIGTERM`` to the group, ``SIGKILL`` after ``grace`` seconds (or once the child has
    ended), reaps the child and raises :class:`stopper.StopRequested`.  If a stopper is already
    stopped, raises at once without starting anything.  Everything else is ``subprocess.run``'s.
    Raises :class:`ValueError` for ``grace < 0`` and for ``start_new_session=False`` /
    ``process_group=`` (the child must lead its own group), :class:`OSError` on a kernel
    without group signals through pidfds (Linux < 6.9).
    """
    g = _grace_arg(grace)
    if stopper is not None and not isinstance(stopper, Stopper):
        raise TypeError(f"stopper must be a stopper.Stopper or None, not {type(stopper).__name__}")
    if kwargs.get("start_new_session", True) is not True or "process_group" in kwargs:
        raise ValueError("stopper.subprocess.run starts the child in its own session: "
                         "start_new_session=False and process_group= are not accepted")
    kwargs["start_new_session"] = True
    if input is not None:
        if kwargs.get("stdin") is not None:
            raise ValueError("stdin and input arguments may not both be used.")
        kwargs["stdin"] = PIPE
    if capture_output:
        if kwargs.get("stdout") is not None or kwargs.get("stderr") is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output.")
        kwargs["stdout"] = PIPE
        kwargs["stderr"] = PIPE
    _check_kernel()

    scoped = checkpoint_stopper()
    stoppers = [x for x in (stopper, scoped) if x is not None]
    for x in stoppers:
        if x.is_set():
            raise StopRequested("stopped before the process started", reason=x.reason)
    s = stoppers[0] if len(stoppers) == 1 else Stopper.linked(*stoppers) if stoppers else None

    # Inside an interruptible scope, nothing in here (a patched communicate()) may raise the
    # stop half way: it is raised at the shield's exit, once the group is dealt with.
    guard = _shield() if scoped is not None else contextlib.nullcontext()
    with guard, subprocess.Popen(*popenargs, **kwargs) as process:
        group = _GroupStop(_pidfd_open(process.pid), g)  # our unreaped child: its own pid
        handle = s.on_stop(group.on_stop) if s is not None else None
        try:
            try:
                stdout, stderr = process.communicate(input, timeout=timeout)
            except TimeoutExpired:
                group.kill()
                process.wait()
                raise
            except BaseException:
                group.kill()
                raise
            finally:
                if handle is not None:
                    handle.cancel()  # waits for a callback in progress: group.fired is final
            if group.fired:
                group.kill()  # the leader has ended: what it left in its group goes now
        finally:
            group.close()
        retcode = process.poll()
    if group.fired:
        raise StopRequested("stopped: the process group was terminated", reason=s.reason if s else None)
    if check and retcode:
        raise CalledProcessError(retcode, process.args, output=stdout, stderr=stderr)
    return CompletedProcess(process.args, retcode, stdout, stderr)
