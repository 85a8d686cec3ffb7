"""``stopper.patch()``, ``unpatch()``, ``is_patched()``: the standard library's blocking calls
become checkpoints for threads inside an interruptible scope (``_patch_calls`` has the calls).

``patch()`` and ``unpatch()`` swap attributes one by one under a lock; a thread in a patched call
meanwhile finishes it with whichever function it entered.  ``unpatch()`` puts back the very
objects that were there (an attribute that was only inherited is deleted again).  This module
stays light: the calls, which import socket, selectors and subprocess, load on the first
``patch()``.
"""

from __future__ import annotations

import _thread

__all__ = ["patch", "unpatch", "is_patched"]

_MISSING = object()
_guard = _thread.allocate_lock()
_saved: list = []  # (owner, name, what was in owner.__dict__ or _MISSING), in patch order


def is_patched() -> bool:
    """True between :func:`patch` and :func:`unpatch`."""
    return bool(_saved)


def patch() -> None:
    """Makes the standard library's blocking calls checkpoints for threads inside an
    interruptible scope, and changes nothing for other threads.  Idempotent.  Patch first:
    a name imported before (``from time import sleep``) keeps the original."""
    from ._patch_calls import replacements

    with _guard:
        if _saved:
            return
        for owner, name, value in replacements():
            _saved.append((owner, name, owner.__dict__.get(name, _MISSING)))
            setattr(owner, name, value)


def unpatch() -> None:
    """Puts back exactly the objects :func:`patch` replaced.  Idempotent."""
    with _guard:
        while _saved:
            owner, name, old = _saved.pop()
            if old is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, old)
