"""Lifetimes: native callbacks into Python, finalizers, keep-alives, and interpreter exit.

*Callbacks.*  Every ``on_stop`` registration (the user's, and the package's own sentinels) goes
through one ctypes trampoline, :data:`CB_TRAMP`, with a key into :data:`callbacks`.

*Finalizers.*  A native stopper or channel is released by a weakref callback when its Python
object dies.  Such a callback runs wherever the last reference happens to drop (any line of any
thread), so it is built from C-level callables only (``functools.partial`` of ctypes functions,
consumed by ``dict.fromkeys``): no bytecode runs in it, so a stop exception pending for that
thread can neither abort it half way nor be swallowed by it.  This is the one place the package
uses C-level chaining; the package's own bookkeeping uses the no-delivery region of
:mod:`stopper._delivery` instead.

*Interpreter exit.*  Native threads (the library's service thread fires deadlines) call back
into Python through ctypes, which takes the GIL; during finalization that can kill or hang the
calling thread.  An ``atexit`` handler therefore makes every hook and callback a no-op
(:data:`exiting`), disarms the deadlines this package armed (waiting for a stop already in
progress to finish), unregisters every callback, and waits for callbacks running on other
threads at that moment before the interpreter starts finalizing; it holds every live object
meanwhile, so no finalizer releases a native stopper that a step of the handler is using.
"""

from __future__ import annotations

import atexit
import collections
import functools
import itertools
import operator
import sys
import threading
import time
import weakref
from ctypes import c_uint64
TYPE_CHECKING = False  # typing is not imported at run time: `import stopper` stays light
if TYPE_CHECKING:
    from typing import Any, Callable, List, Optional

from . import _native as _n

_partial = functools.partial
_BOTTOM: Any = object()  # bottom of every per-stopper key list: iter(keys.pop, _BOTTOM)
new_key = itertools.count(1).__next__  # thread-safe under the GIL (C-level next)

#: Set by the atexit handler: hooks and callbacks do nothing from then on.
exiting = False


#: Calls its argument; C-level (no bytecode), for the finalizer chains below.
call: Callable[[Callable[[], Any]], Any] = getattr(operator, "call", None) or operator.methodcaller("__call__")


# ---------------------------------------------------------------- callbacks
class Callback:
    """One ``stopper_on_stop`` registration: ``fn(reason)`` (or a sentinel) for ``handle``."""

    __slots__ = ("fn", "handle", "id", "keys")

    def __init__(self, fn: Any, handle: Optional[int], keys: Optional[list]) -> None:
        self.fn = fn
        self.handle = handle
        self.id = c_uint64(0)
        self.keys = keys


callbacks: "dict[int, Callback]" = {}  # callback user_data -> registration

SENTINEL: Any = object()  # a deadline's "the stop it caused has completed" callback
KEEP: Any = object()  # a stop_on_signal keep-alive's callback
# handle -> [stopper object, sentinel key, threading.Event done]: keeps an armed stopper (and
# so its callbacks) alive until its deadline fires or is disarmed, like the C library does.
armed: "dict[int, list]" = {}
# handle -> [stopper object, sentinel key]: keeps a stopper with a pending stop_on_signal alive.
kept: "dict[int, list]" = {}

# One item per callback running right now, on any thread: the exit handler waits for them.
_running: list = []


def report(exc: BaseException, what: str) -> None:
    """Reports an exception from a callback the way threading.excepthook does."""
    try:
        args = threading.ExceptHookArgs([type(exc), exc, exc.__traceback__, threading.current_thread()])  # type: ignore[attr-defined]
        threading.excepthook(args)
    except BaseException:  # noqa: BLE001 - last resort, never let it escape into C
        try:
            sys.unraisablehook(sys.UnraisableHookArgs((type(exc), exc, exc.__traceback__, what, None)))  # type: ignore[call-arg, misc]
        except BaseException:  # noqa: BLE001
            pass


def discard(keys: list, key: Any) -> None:
    try:
        keys.remove(key)
    except ValueError:
        pass


def _deadline_done(handle: Optional[int]) -> None:
    a = armed.pop(handle, None) if handle is not None else None
    if a is not None:
        a[2].set()


def _callback_entry(data: Optional[int], reason: int) -> None:
    _running.append(None)
    try:
        cb = callbacks.pop(data or 0, None)
        if cb is None:
            return
        if cb.keys is not None:
            discard(cb.keys, data)
        if cb.fn is SENTINEL:
            _deadline_done(cb.handle)
        elif cb.fn is KEEP:
            kept.pop(cb.handle, None)
        elif not exiting and cb.fn is not None:
            try:
                cb.fn(reason)
            except BaseException as e:  # noqa: BLE001
                report(e, "stopper on_stop callback")
    except BaseException as e:  # noqa: BLE001 - never unwind into the library
        report(e, "stopper callback trampoline")
    finally:
        _running.pop()


#: The native callback entry point, alive for the life of the process (one extra reference is
#: leaked on purpose so that even module teardown never frees code the library may call).
CB_TRAMP = _n.CALLBACK_FN(_callback_entry)
_n.keep_forever(CB_TRAMP)


# ---------------------------------------------------------------- finalization
# key -> weakref of every live Stopper/Channel, so the exit handler can release them.
live: "dict[int, weakref.ref]" = {}
finalizers: "dict[int, Callable[[Any], Any]]" = {}


def register_finalizer(obj: Any, steps: List[Callable[[], Any]]) -> None:
    """Runs ``steps`` (C-level callables) once when ``obj`` dies (or at exit), from a C-level
    weakref callback: ``dict.fromkeys(iterator, value)`` consumes the lazy map (``id`` makes
    every result hashable) and ignores its argument, the weakref."""
    key = new_key()
    steps = steps + [_partial(live.pop, key, None), _partial(finalizers.pop, key, None)]
    fin = _partial(dict.fromkeys, map(id, map(call, steps)))
    finalizers[key] = fin
    live[key] = weakref.ref(obj, fin)


def unregister_keys_step(handle: int, keys: list) -> Callable[[], Any]:
    """C-level: pops every key of ``keys`` and unregisters its callback (finalizers)."""
    regs = filter(None, map(callbacks.pop, iter(keys.pop, _BOTTOM), itertools.repeat(None)))
    return _partial(collections.deque, map(_partial(_n.stopper_unregister, handle), map(_ID_OF, regs)), 0)


_ID_OF = operator.attrgetter("id")


def new_keys() -> list:
    """A stopper's list of callback keys (its bottom is a marker the finalizer stops at)."""
    return [_BOTTOM]


# ---------------------------------------------------------------- interpreter exit
def _at_exit() -> None:
    """Runs before finalization: after it, the library never calls into Python again."""
    global exiting
    exiting = True
    # 0. Hold every live object until the end: a stop running on another thread meanwhile (a
    #    signal's, on the service thread) may drop the last reference to one (its keep-alive in
    #    kept), and that object's finalizer must not release the native stopper while step 2
    #    below is inside stopper_unregister of it.
    hold = [wr() for wr in list(live.values())]  # noqa: F841 - a reference, held on purpose
    # 1. Disarm the deadlines we armed; a stop already firing is waited for (its sentinel
    #    callback runs after every hook and child of that stop).
    for h in list(armed):
        _n.stopper_stop_after(h, -1, 0)
    for a in list(armed.values()):
        if a[0].is_set():
            a[2].wait(2.0)
    armed.clear()
    # 2. Unregister every callback (waits for one running on another thread).
    for key, cb in list(callbacks.items()):
        if cb.handle:
            _n.stopper_unregister(cb.handle, cb.id)
        callbacks.pop(key, None)
    kept.clear()
    # 2b. Wait (bounded) for callbacks running on other threads right now (a stop from a
    #     signal or another process runs them on a native thread).
    give_up = time.monotonic() + 2.0
    while _running and time.monotonic() < give_up:
        time.sleep(0.001)
    # 3. Release what is still alive, exactly once, when no other Python thread could still
    #    be using it; otherwise leave it to the operating system.
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not isinstance(t, threading._DummyThread)]  # type: ignore[attr-defined]
    if others or threading.current_thread() is not threading.main_thread():
        return
    for key, wr in list(live.items()):
        obj = wr()
        fin = finalizers.get(key)
        if obj is not None and fin is not None:
            obj._detach()
            fin(None)


atexit.register(_at_exit)
