"""Exceptions raised by the stopper package."""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: `import stopper` stays light
if TYPE_CHECKING:
    from typing import Optional

__all__ = ["StopRequested", "Timeout", "ChannelClosed"]


class StopRequested(BaseException):
    """Raised when a stop ends an operation or interrupts a thread.

    It derives from :class:`BaseException`, like :class:`KeyboardInterrupt` and
    :class:`asyncio.CancelledError`, so that a stop raised into a thread is not swallowed by
    ``except Exception:`` blocks in the code it interrupts.

    ``reason`` is the stop reason when known (``None`` for an exception raised
    asynchronously into a thread, which carries no arguments).
    """

    def __init__(self, *args: object, reason: Optional[int] = None) -> None:
        super().__init__(*args)
        self.reason = reason


class Timeout(TimeoutError):
    """Raised by a :func:`stopper.timeout` block whose time limit passed: inside the block the
    deadline unwinds the code as :class:`StopRequested`; at the block's exit it becomes this
    (as ``asyncio.timeout`` turns ``CancelledError`` into ``TimeoutError``).  It is a built-in
    :class:`TimeoutError`; ``seconds`` is the limit."""

    def __init__(self, *args: object, seconds: Optional[float] = None) -> None:
        super().__init__(*args)
        self.seconds = seconds


class ChannelClosed(Exception):
    """Raised by :meth:`Channel.put` on a closed channel and by :meth:`Channel.get` on a
    closed channel that has been drained."""
