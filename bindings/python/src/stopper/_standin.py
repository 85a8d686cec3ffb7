"""TEMPORARY stand-in for the delivery machinery (``_delivery.py``, being built by another
change): the few names of the delivery API that the framework integrations use
(``checkpoint_stopper``, ``in_checkpoint``, ``Stopper.interruptible`` in checkpoint mode,
``stopper.checkpoint/sleep/shield``), so that they can be built and tested first.  Used only
when ``stopper._delivery`` does not exist; installs nothing that already exists; deleted once
the real machinery has landed.  No "async" mode here."""
from __future__ import annotations
import contextlib, threading, time
from typing import Optional
from ._core import Stopper
from ._errors import StopRequested

_tls = threading.local()

def _stack():
    try:
        return _tls.stack
    except AttributeError:
        _tls.stack = []
        return _tls.stack

def checkpoint_stopper() -> Optional[Stopper]:
    st = _stack()
    if not st or getattr(_tls, "shield", 0):
        return None
    if len(st) == 1:
        return st[0]
    return Stopper.linked(*st)

def checkpoint() -> None:
    s = checkpoint_stopper()
    if s is not None and s.is_set():
        raise StopRequested("stopped", reason=s.reason)

class in_checkpoint:
    def __enter__(self):
        return self
    def __exit__(self, t, e, tb):
        if t is None:
            checkpoint()
        return False

@contextlib.contextmanager
def shield():
    _tls.shield = getattr(_tls, "shield", 0) + 1
    try:
        yield
    finally:
        _tls.shield -= 1
    checkpoint()

def sleep(seconds):
    s = checkpoint_stopper()
    if s is None:
        return time.sleep(seconds)
    with in_checkpoint():
        s.wait(seconds)

@contextlib.contextmanager
def _interruptible(self, mode="checkpoint"):
    if mode not in ("checkpoint", "async", True):
        raise ValueError("mode")
    st = _stack()
    st.append(self)
    try:
        yield self
    finally:
        st.pop()

if not hasattr(Stopper, "interruptible"):
    Stopper.interruptible = _interruptible
import stopper as _pkg
for _n in ("checkpoint", "shield", "sleep"):
    if not hasattr(_pkg, _n):
        setattr(_pkg, _n, globals()[_n])
