"""Exceptions raised by the stopper package."""

from __future__ import annotations

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


class Timeout(StopRequested):
    """Raised inside a :func:`stopper.timeout` block when its time limit passes."""


class ChannelClosed(Exception):
    """Raised by :meth:`Channel.put` on a closed channel and by :meth:`Channel.get` on a
    closed channel that has been drained."""
