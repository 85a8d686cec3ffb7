"""Processes: argument checks and error messages for shared stoppers, process escalation and
stops on a signal (SPEC.md, "Processes").  The methods themselves live on
:class:`stopper.Stopper` (``_stopper``); this module holds what they share, and
:func:`unlink_shared`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
TYPE_CHECKING = False  # typing is not imported at run time: `import stopper` stays light
if TYPE_CHECKING:
    from typing import Any, NoReturn, Optional, Tuple

from . import _native as _n

__all__ = ["unlink_shared"]

#: The rule for shared stopper names (SPEC.md): also refused are "." and "..".
NAME_RULE = "[A-Za-z0-9_.-]{1,200}, not '.' or '..'"
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


def _refused_signals() -> "Tuple[set, set]":
    """Signals a stop-on-signal handler may never take (the library refuses them too): the
    ones that cannot be caught, and the synchronous/fatal ones a handler would turn into a busy
    loop.  (``signal`` is imported here, when a signal is named: `import stopper` stays light.)"""
    import signal

    uncatchable = {int(signal.SIGKILL), int(signal.SIGSTOP)}
    synchronous = {
        int(getattr(signal, n))
        for n in ("SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT", "SIGTRAP", "SIGSYS")
        if hasattr(signal, n)
    }
    return uncatchable, synchronous


def shared_name_arg(name: Any) -> bytes:
    """Checks a shared stopper name; returns it encoded for the C call."""
    if not isinstance(name, str):
        raise TypeError(f"a shared stopper name must be a str, not {type(name).__name__}")
    if not 1 <= len(name) <= 200 or not _NAME_CHARS.issuperset(name) or name in (".", ".."):
        raise ValueError(
            f"invalid shared stopper name {name!r}: a name must match {NAME_RULE} "
            "(it becomes the POSIX shared-memory object /stopper.<name>)"
        )
    return name.encode("ascii")


def shm_path(name: str) -> str:
    """Where the object of a (valid) name lives on Linux."""
    return f"/dev/shm/stopper.{name}"


def fail_open(name: str, err: int) -> NoReturn:
    """The exception for ``stopper_open_shared(name)`` returning NULL with ``errno == err``
    (the name itself was valid: it was checked before the call)."""
    what = f"stopper.Stopper.shared({name!r})"
    if err == 0:
        raise OSError(f"{what}: stopper_open_shared failed without saying why")
    if err == errno.EINVAL:
        try:
            owner = os.stat(shm_path(name)).st_uid
        except OSError:
            owner = os.geteuid()
        if owner != os.geteuid():
            try:
                import pwd

                who = f"user {pwd.getpwuid(owner).pw_name!r} (uid {owner})"
            except (ImportError, KeyError):
                who = f"uid {owner}"
            raise ValueError(
                f"{what}: {shm_path(name)} belongs to {who}, not to this user: refused. This "
                "user cannot remove it (stopper.unlink_shared would fail too): pick another "
                "name, or ask that user (or root) to remove it."
            )
        raise ValueError(
            f"{what}: {shm_path(name)} is not a shared stopper this process can trust (corrupt, "
            "truncated, of another layout, not owned by this user, or open to other users): "
            f"refused. If it is stale, remove it with stopper.unlink_shared({name!r})."
        )
    if err == errno.EMFILE:
        raise OSError(
            err,
            f"{what}: {os.strerror(err)}: this process already has the maximum of "
            f"{_n.MAX_OPEN_SHARED} shared stoppers open",
        )
    if err == errno.ENOMEM:
        raise MemoryError(f"{what}: out of memory")
    raise OSError(err, f"{what}: {os.strerror(err)}", shm_path(name))


def unlink_shared(name: str, *, missing_ok: bool = False) -> None:
    """Removes the name of a shared stopper (``stopper_unlink_shared``).

    Processes that opened it keep their stopper, and it still works between them; the next
    :meth:`Stopper.shared` of the name creates a fresh, running one.  Raises
    :class:`FileNotFoundError` when there is no such object (unless ``missing_ok``),
    :class:`ValueError` for a name outside ``[A-Za-z0-9_.-]{1,200}`` (or ``.``/``..``),
    :class:`TypeError` for a name that is not a ``str``, :class:`OSError` for other failures.
    """
    raw = shared_name_arg(name)
    ctypes.set_errno(0)
    st = _n.stopper_unlink_shared(raw)
    if st == _n.OK:
        return
    err = ctypes.get_errno()
    if st == _n.EOS and err == errno.ENOENT:
        if missing_ok:
            return
        raise FileNotFoundError(err, f"stopper.unlink_shared({name!r}): no such shared stopper", shm_path(name))
    if st == _n.EOS and err:
        raise OSError(err, f"stopper.unlink_shared({name!r}): {os.strerror(err)}", shm_path(name))
    if st == _n.EINVAL:
        raise ValueError(f"stopper.unlink_shared({name!r}): the library refused the name (rule: {NAME_RULE})")
    _n.fail(st, "stopper_unlink_shared")


def process_arg(p: Any) -> Tuple[Optional[int], str]:
    """What :meth:`Stopper.watch_process` was given: (pid, description), with pid None when
    the process is known to have ended already (so its pid may belong to another process)."""
    if isinstance(p, bool):
        raise TypeError("watch_process takes a pid, a multiprocessing.Process or a subprocess.Popen, not bool")
    if isinstance(p, int):
        if p <= 0:
            raise ValueError(f"watch_process: a pid must be > 0, got {p}")
        if p > _n.INT32_MAX:
            raise ValueError(f"watch_process: pid {p} is out of range")
        return p, f"pid {p}"
    import multiprocessing.process

    if isinstance(p, multiprocessing.process.BaseProcess):
        if p.pid is None:
            raise ValueError(f"watch_process: {p!r} has not been started")
        # exitcode polls (and reaps) the child: once it is known, the pid is no longer its own.
        if p.exitcode is not None:
            return None, repr(p)
        return int(p.pid), repr(p)
    subprocess = sys.modules.get("subprocess")  # not imported: p cannot be a Popen
    if (subprocess is not None and isinstance(p, subprocess.Popen)) or (
        hasattr(p, "returncode") and isinstance(getattr(p, "pid", None), int) and not isinstance(p.pid, bool)
    ):
        # subprocess.Popen and the like (asyncio.subprocess.Process): returncode is set once
        # the child was reaped, after which its pid may be reused.
        if p.returncode is not None:
            return None, repr(p)
        pid = p.pid
        if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid <= _n.INT32_MAX:
            raise ValueError(f"watch_process: {p!r} has no valid pid ({pid!r})")
        return pid, repr(p)
    raise TypeError(
        "watch_process takes a pid (int), a multiprocessing.Process or a subprocess.Popen, "
        f"not {type(p).__name__}"
    )


def signal_arg(signum: Any) -> int:
    """Checks a signal number for :meth:`Stopper.stop_on_signal` (before the library does,
    to say precisely what is wrong)."""
    if isinstance(signum, bool) or not isinstance(signum, int):
        raise TypeError(f"stop_on_signal takes a signal number (int or signal.Signals), not {type(signum).__name__}")
    import signal

    s = int(signum)
    top = min(63, int(getattr(signal, "SIGRTMAX", 64)))
    if not 1 <= s <= top:
        raise ValueError(f"stop_on_signal: signal number {s} is out of range (1..{top})")
    _UNCATCHABLE, _SYNCHRONOUS = _refused_signals()
    if s in _UNCATCHABLE:
        raise ValueError(f"stop_on_signal: {_signame(s)} cannot be caught")
    if s in _SYNCHRONOUS:
        raise ValueError(
            f"stop_on_signal: {_signame(s)} is a synchronous (fault) signal; a handler that "
            "returns would make the faulting instruction run again"
        )
    return s


def _signame(s: int) -> str:
    import signal

    try:
        return signal.Signals(s).name
    except ValueError:
        return f"signal {s}"


def fail_signal(s: int) -> NoReturn:
    """The exception for ``stopper_stop_on_signal`` refusing a usable signal number: it
    already has a disposition that is not the default (or the library's own)."""
    import signal

    name = _signame(s)
    try:
        cur = signal.getsignal(s)
    except (ValueError, OSError):
        cur = None
    if cur is signal.SIG_IGN:
        now = "is ignored (SIG_IGN)"
    elif cur is signal.default_int_handler:
        now = "has CPython's KeyboardInterrupt handler (installed for SIGINT at start-up)"
    elif callable(cur):
        now = f"has a Python handler ({getattr(cur, '__qualname__', cur)!r})"
    else:  # CPython reports what it last set (SIG_DFL) or None: the handler is not its own
        now = "has a handler installed outside Python (by a C library, which signal.getsignal does not see)"
    ref = f"signal.{name}" if name.startswith("SIG") else str(s)
    raise ValueError(
        f"stop_on_signal: {name} {now}; the library never takes a signal that already has a "
        "handler. Use a signal nobody handles yet (SIGTERM, SIGHUP, SIGUSR1…), or hand this "
        f"one over first with signal.signal({ref}, signal.SIG_DFL)."
    )
