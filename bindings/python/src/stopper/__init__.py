"""stopper: stop Python threads safely and at once.

A :class:`Stopper` is a one-way stop flag whose waits wake the moment it is stopped, with
children, deadlines, callbacks, a file descriptor for event loops, and worker join.
:class:`StoppableThread` is the Cookbook's stoppable thread done right (``join`` = stop + join,
and optionally a stop raised into the thread: at checkpoints or anywhere, see
:meth:`Stopper.interruptible`, :func:`checkpoint`, :func:`shield`, :func:`sleep`);
:func:`timeout` bounds a block as ``asyncio.timeout`` does;
:class:`Channel` is a queue whose ``get``/``put`` end on a stop instead of polling.
:meth:`Stopper.shared` shares one stop between processes (in any language);
:meth:`Stopper.watch_process` ends a process with SIGTERM then SIGKILL on the stop, and
:meth:`Stopper.stop_on_signal` stops on SIGTERM & co.

The work is done by the native library libstopper (Rust, C ABI), loaded with ctypes.
"""

from __future__ import annotations

from . import _native
from ._channel import Channel
from ._delivery import checkpoint, shield, sleep
from ._errors import ChannelClosed, StopRequested, Timeout
from ._native import StopperError
from ._process import unlink_shared
from ._stopper import StopHandle, Stopper, current, wait_any
from ._thread import StoppableThread
from ._timeout import timeout

__version__ = "0.1.0"

#: Reason recorded by ``stop()`` with reason 0.
REASON_REQUESTED = _native.REASON_REQUESTED
#: Reason recorded by a deadline (``stop_after``, ``timeout``).
REASON_DEADLINE = _native.REASON_DEADLINE
#: Reason recorded by a stop on a process signal.
REASON_SIGNAL = _native.REASON_SIGNAL
#: How many shared stoppers (``Stopper.shared``) one process can have open at once.
MAX_OPEN_SHARED = _native.MAX_OPEN_SHARED


def library_version() -> str:
    """The version of the loaded libstopper (``stopper_version()``)."""
    return _native.version()


def library_path() -> str:
    """Where the loaded libstopper was found."""
    return _native.LIBRARY_PATH


def thread_id() -> int:
    """The calling thread's id as the library's hooks receive it (== threading.get_ident())."""
    return int(_native.stopper_thread_id())


__all__ = [
    "Stopper",
    "StopHandle",
    "StoppableThread",
    "Channel",
    "current",
    "wait_any",
    "unlink_shared",
    "timeout",
    "checkpoint",
    "shield",
    "sleep",
    "StopRequested",
    "Timeout",
    "ChannelClosed",
    "StopperError",
    "REASON_REQUESTED",
    "REASON_DEADLINE",
    "REASON_SIGNAL",
    "MAX_OPEN_SHARED",
    "library_version",
    "library_path",
    "thread_id",
    "__version__",
]
