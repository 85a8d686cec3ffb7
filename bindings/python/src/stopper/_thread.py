"""StoppableThread: the Cookbook's stoppable thread, with join = stop + join, run() inside a
stopper, and optionally an asynchronous StopRequested raised into run() on stop."""

from __future__ import annotations

import functools
import threading
from ctypes import byref
from typing import Any, Callable, Iterable, Mapping, Optional

from . import _core as _c
from . import _native as _n
from ._core import Stopper, _Entry, _Interrupt
from ._errors import StopRequested

__all__ = ["StoppableThread"]


def _run_in_scope(thread: "StoppableThread", run: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    ts = _c._state()
    if thread._stopper_inside == ts.ident:  # super().run() from an overriding run()
        return run(thread, *args, **kwargs)
    s = thread._stopper
    h = s._h
    barrier = _Entry(None, None, _c._NOOP)
    sc: Optional[_Interrupt] = None
    enter: "tuple[Callable[[], Any], ...]"
    if thread._interrupt:
        sc = _Interrupt(s, ts, StopRequested)
        sc.hook = hook = _n.Hook(_c._HOOK_TRAMP, sc.key, 0)
        entry = _Entry(
            s,
            sc,
            _c._partial(
                _c._deque,
                map(
                    _c._CALL,
                    (
                        _c._partial(_n.stopper_exit, h),  # waits for a hook call in progress
                        _c._partial(setattr, sc, "active", False),
                        _c._partial(_c._interrupts.pop, sc.key, None),
                    ),
                ),
                0,
            ),
        )
        enter = (
            _c._partial(_c._interrupts.__setitem__, sc.key, sc),
            _c._partial(setattr, sc, "active", True),
            _c._partial(_n.stopper_enter, h, byref(hook)),
            _c._partial(ts.stack.append, entry),
        )
    else:
        entry = _Entry(s, None, _c._partial(_n.stopper_exit, h))
        enter = (_c._partial(_n.stopper_enter, h, None), _c._partial(ts.stack.append, entry))
    close = _c._exit_chain(ts, barrier, sc)
    ts.stack.append(barrier)  # an exception from here on is caught below; close() pops to it
    try:
        thread._stopper_inside = ts.ident
        list(map(_c._CALL, enter))
        if sc is not None and s.is_set():
            # Entered an already stopped stopper: no hook call comes, raise here.
            _c._mark_delivered(ts, sc)
            raise _c._make_exc(sc)
        return run(thread, *args, **kwargs)
    except StopRequested:
        if s.is_set():
            return None  # the expected way for an interrupted run() to end
        raise
    finally:
        close()
        thread._stopper_inside = None


def _inside(run: Callable[..., Any]) -> Callable[..., Any]:
    if getattr(run, "__stopper_inside__", False):
        return run

    @functools.wraps(run)
    def run_inside(self: "StoppableThread", *args: Any, **kwargs: Any) -> Any:
        return _run_in_scope(self, run, args, kwargs)

    run_inside.__stopper_inside__ = True  # type: ignore[attr-defined]
    return run_inside


class StoppableThread(threading.Thread):
    """A :class:`threading.Thread` that can be stopped.

    * ``stop()`` stops its :attr:`stopper`; ``stopped()`` tells whether it is stopped;
    * ``join()`` stops, then joins (the Cookbook recipe: join means "stop, then wait");
    * ``run()`` (yours, if you override it, or ``target``) executes inside the stopper:
      :func:`stopper.current` returns it there, and stopper waits wake on its stop;
    * with ``interrupt=True``, a stop raises :class:`StopRequested` inside ``run()`` (through
      ``PyThreadState_SetAsyncExc``), also when it comes from a deadline; ``run()`` ending by
      that exception ends the thread quietly.  The exception reaches Python code at once and
      stopper waits at once, but not C code that never returns to Python (``time.sleep``,
      ``socket.recv``): use stopper waits there.  It never fires after ``run()`` returned.

    ``stopper``: share an existing :class:`Stopper` (stopping any of the threads that share it
    stops them all); by default each thread gets its own.
    """

    def __init__(
        self,
        group: None = None,
        target: Optional[Callable[..., object]] = None,
        name: Optional[str] = None,
        args: Iterable[Any] = (),
        kwargs: Optional[Mapping[str, Any]] = None,
        *,
        daemon: Optional[bool] = None,
        stopper: Optional[Stopper] = None,
        interrupt: bool = False,
    ) -> None:
        if stopper is None:
            stopper = Stopper()
        else:
            _c._stopper_arg(stopper)
        if not isinstance(interrupt, bool):
            raise TypeError(f"interrupt must be a bool, not {type(interrupt).__name__}")
        super().__init__(group, target, name, args, kwargs, daemon=daemon)
        self._stopper = stopper
        self._interrupt = interrupt
        self._stopper_inside: Optional[int] = None

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "run" in cls.__dict__:
            cls.run = _inside(cls.__dict__["run"])  # type: ignore[method-assign]

    @property
    def stopper(self) -> Stopper:
        """The thread's stopper."""
        return self._stopper

    @property
    def interrupt(self) -> bool:
        """Whether a stop raises StopRequested inside run()."""
        return self._interrupt

    def stop(self, reason: int = 0) -> bool:
        """Stops the thread's stopper; True if this call stopped it."""
        return self._stopper.stop(reason)

    def stopped(self) -> bool:
        """True once stopped."""
        return self._stopper.is_set()

    def join(self, timeout: Optional[float] = None) -> None:
        """Stops the thread, then waits for it like :meth:`threading.Thread.join`."""
        _c._timeout_ns(timeout)
        self._stopper.stop()
        super().join(timeout)

    def run(self) -> None:
        """Runs ``target`` (as :meth:`threading.Thread.run`), inside the stopper."""
        super().run()


StoppableThread.run = _inside(StoppableThread.__dict__["run"])  # type: ignore[method-assign]
