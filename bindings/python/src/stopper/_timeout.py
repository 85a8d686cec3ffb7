"""timeout(): a block with a time limit, as ``asyncio.timeout`` has it (SPEC, "Python: timeout
like asyncio.timeout").

The block runs in an interruptible scope (``mode``: "async" by default, or "checkpoint") of its
own stopper, which :func:`stopper.current` returns inside: a stopper linked to the enclosing
one (so a stop of the thread reaches the block too) and to a private deadline stopper (so the
timeout knows whether it expired itself).  The deadline unwinds the block as StopRequested; at
the block's exit, if this timeout's deadline passed, it becomes :class:`stopper.Timeout`.
"""

from __future__ import annotations

import functools
import math
import time
TYPE_CHECKING = False  # typing is not imported at run time: `import stopper` stays light
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, TypeVar

    F = TypeVar("F", bound=Callable[..., Any])

from . import _delivery as _d
from . import _native as _n
from ._errors import StopRequested, Timeout
from ._stopper import Stopper, current

__all__ = ["timeout"]

def _seconds_arg(seconds: Any) -> Optional[float]:
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"timeout() takes a number of seconds or None, not {type(seconds).__name__}")
    if seconds != seconds:
        raise ValueError("timeout() takes a number of seconds or None, not NaN")
    return seconds


class _TimeoutScope:
    """What :func:`timeout` returns: a context manager (one block at a time) and a decorator."""

    __slots__ = ("seconds", "mode", "_deadline", "_own", "_stopper", "_entry")

    def __init__(self, seconds: Optional[float], mode: str = "async") -> None:
        self.seconds = _seconds_arg(seconds)
        self.mode = _d.mode_arg(mode)
        self._deadline: Optional[float] = None
        self._own: Optional[Stopper] = None  # stopped by this timeout's deadline only
        self._stopper: Optional[Stopper] = None  # what the block obeys (current() inside)
        self._entry: Any = None

    @property
    def expired(self) -> bool:
        """True when this timeout's own deadline passed in the (last) block."""
        own = self._own
        return own is not None and own.is_set()

    @property
    def deadline(self) -> Optional[float]:
        """When the limit passes, in :func:`time.monotonic` seconds; None: no limit (or not
        entered yet)."""
        return self._deadline

    def reschedule(self, seconds: Optional[float]) -> None:
        """Moves the deadline to ``seconds`` from now (None: no limit).  Only inside the block,
        before it expired (RuntimeError otherwise)."""
        seconds = _seconds_arg(seconds)
        own = self._own
        if self._entry is None or own is None:
            raise RuntimeError("reschedule() is for a timeout() whose block is running")
        if own.is_set():
            raise RuntimeError("this timeout() has already expired")
        if seconds is None:
            own.stop_after(None)
            self._deadline = None
        elif seconds <= 0:
            self._deadline = time.monotonic()
            own.stop(_n.REASON_DEADLINE)
        else:
            self._deadline = time.monotonic() + seconds
            own.stop_after(seconds)

    def _expired_message(self) -> str:
        return f"the block did not finish within its time limit of {self.seconds!r} seconds"

    def __enter__(self) -> "_TimeoutScope":
        if self._entry is not None:
            raise RuntimeError("this timeout() is already in use: create one per block")
        seconds = self.seconds
        if seconds is not None and seconds <= 0:
            raise Timeout(self._expired_message(), seconds=seconds)
        own = Stopper()
        parent = current()
        s = own if parent is None else Stopper.linked(parent, own)
        self._own, self._stopper = own, s
        try:
            if seconds is None or math.isinf(seconds):
                self._deadline = None
            else:
                self._deadline = time.monotonic() + seconds
                own.stop_after(seconds)
            self._entry = _d.enter(s, self.mode, Stopper.linked)
        except StopRequested as ev:
            own.stop_after(None)
            if own.is_set():  # the deadline passed before the block began
                raise Timeout(self._expired_message(), seconds=seconds) from ev
            raise
        except BaseException:
            own.stop_after(None)
            raise
        return self

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        e, self._entry = self._entry, None
        if e is None:
            raise RuntimeError("timeout(): __exit__ without __enter__")
        own = self._own
        assert own is not None
        with _d.quiet(deliver=False):  # an enclosing scope's stop comes a moment later
            own.stop_after(None)  # disarm first: nothing fires while the scope is left
            _d.leave(e, deliver=False)
        if et is not None and issubclass(et, StopRequested) and own.is_set():
            # This deadline's StopRequested is consumed here; an enclosing scope stopped
            # meanwhile still gets its own (SPEC: the innermost expired converts, an outer
            # one that expired meanwhile still fires).
            _d.rearm_enclosing(_d.state())
            raise Timeout(self._expired_message(), seconds=self.seconds) from ev

    def __call__(self, fn: F) -> F:
        """Decorator form: each call of ``fn`` runs under a fresh ``timeout(seconds, mode)``."""
        if not callable(fn):
            raise TypeError("timeout() decorates a callable")
        seconds, mode = self.seconds, self.mode

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _TimeoutScope(seconds, mode):  # type: ignore[arg-type]
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"<stopper.timeout seconds={self.seconds!r} mode={self.mode!r} expired={self.expired}>"


def timeout(seconds: Optional[float], mode: str = "async") -> _TimeoutScope:
    """A time limit for a block: ``with stopper.timeout(2) as t: ...`` or ``@stopper.timeout(2)``.

    Inside, the deadline unwinds the code as :class:`StopRequested` (a ``BaseException``:
    ``except Exception`` does not swallow it), delivered as ``mode`` says: ``"async"`` (default:
    anywhere Python code runs, and in every checkpoint) or ``"checkpoint"`` (only in
    checkpoints: stopper waits, :func:`stopper.sleep`, ``stopper.sync``, patched calls).  At
    the block's exit it becomes :class:`stopper.Timeout` (a :class:`TimeoutError`); an
    exception the block raised itself passes through unchanged.  ``0`` or a negative value
    raises Timeout at once, ``None`` never fires, NaN is a ValueError.  Inside the block
    :func:`stopper.current` is the timeout's stopper (stopped also when the enclosing one is).
    ``t.expired``, ``t.deadline`` (:func:`time.monotonic`), ``t.reschedule(seconds)``.
    """
    return _TimeoutScope(seconds, mode)
