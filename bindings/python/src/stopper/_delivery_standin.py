"""A stand-in for ``_delivery`` (the delivery machinery another change builds), with the same
names, so that ``stopper.sync`` and ``stopper.patch()`` run before it lands.  It is used only
when ``stopper._delivery`` is missing, and is deleted once that module is in place.

It gives: ``checkpoint_stopper()``, ``in_checkpoint``, ``checkpoint()``, ``shield()``,
``sleep()``, and ``Stopper.interruptible(mode)`` when the class lacks it.  "async" mode raises
an async exception into the thread when it is not inside a checkpoint (roughly; the real
machinery is careful about where it lands).
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
from typing import Any, Iterator, Optional

from ._core import Stopper, wait_any
from ._errors import StopRequested

class _Local(threading.local):
    cp: Optional[Stopper] = None


_tls = _Local()
_original_sleep = time.sleep


class _St:
    in_cp = 0


def _st() -> _St:
    try:
        return _tls.st
    except AttributeError:
        st = _tls.st = _St()
        return st


def checkpoint_stopper() -> Optional[Stopper]:
    """The stopper a blocking call of this thread must also wake on, or None."""
    return _tls.cp


def checkpoint() -> None:
    s = checkpoint_stopper()
    if s is not None and s.is_set():
        raise StopRequested("stopped", reason=s.reason or None)


class in_checkpoint:
    """Wraps the blocking part of a checkpoint: no async exception inside; checkpoint() on exit."""

    __slots__ = ()

    def __enter__(self) -> None:
        _st().in_cp += 1
        s = checkpoint_stopper()
        if s is not None and s.is_set():  # the checkpoint raises: drop a pending async copy
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.get_ident()), None)

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        _st().in_cp -= 1
        if et is None:
            checkpoint()


@contextlib.contextmanager
def shield() -> Iterator[None]:
    saved = checkpoint_stopper()
    _tls.cp = None
    try:
        yield
    finally:
        _tls.cp = saved
    checkpoint()


def sleep(seconds: float) -> None:
    s = checkpoint_stopper()
    if s is None:
        return _original_sleep(seconds)
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    with in_checkpoint():
        s.wait(seconds)


@contextlib.contextmanager
def _interruptible(self: Stopper, mode: Any = "checkpoint") -> Iterator[None]:
    if mode is True:
        mode = "async"
    if mode not in ("checkpoint", "async"):
        raise ValueError(f"unknown mode {mode!r}")
    outer = checkpoint_stopper()
    s = self if outer is None else Stopper.linked(outer, self)
    handle = None
    if mode == "async" and s.is_set():
        raise StopRequested("stopped")
    if mode == "async":
        ident = threading.get_ident()
        st = _st()

        def fire(_reason: int) -> None:
            if st.in_cp == 0:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(StopRequested))

        handle = s.on_stop(fire)
    _tls.cp = s
    try:
        yield
    finally:
        if handle is not None:
            handle.cancel()
        _tls.cp = outer


if not hasattr(Stopper, "interruptible"):
    Stopper.interruptible = _interruptible  # type: ignore[attr-defined]

__all__ = ["checkpoint_stopper", "in_checkpoint", "checkpoint", "shield", "sleep", "wait_any"]
