"""StoppableThread: the Cookbook's stoppable thread, with join = stop + join, run() inside a
stopper, and optionally an asynchronous StopRequested raised into run() on stop."""

from __future__ import annotations

import functools
import threading
TYPE_CHECKING = False  # typing is not imported at run time: `import stopper` stays light
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Mapping, Optional, Union

from . import _delivery as _d
from ._args import timeout_ns as _timeout_ns
from ._errors import StopRequested
from ._stopper import Stopper, _stopper_arg

__all__ = ["StoppableThread"]


def _run_in_scope(thread: "StoppableThread", run: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    ident = threading.get_ident()
    if thread._stopper_inside == ident:  # super().run() from an overriding run()
        return run(thread, *args, **kwargs)
    s = thread._stopper
    thread._stopper_inside = ident
    depth = _d.depth()
    try:
        with (s if thread._interrupt is False else s.interruptible(thread._interrupt)):
            return run(thread, *args, **kwargs)
    except StopRequested:
        if s.is_set():
            return None  # the expected way for an interrupted run() to end
        raise
    finally:
        thread._stopper_inside = None
        _d.unwind(depth)  # a scope whose exit never ran must not outlive run()


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
    * ``interrupt`` says how a stop reaches ``run()`` (see :mod:`stopper._delivery`):
      ``False`` (default) cooperatively; ``"checkpoint"``: :class:`StopRequested` is raised
      inside checkpoints (stopper waits, :func:`stopper.sleep`, :func:`stopper.checkpoint`,
      ``stopper.sync``, patched calls), never between two ordinary lines; ``"async"`` (or
      ``True``): also anywhere Python code runs (``PyThreadState_SetAsyncExc``), also when
      the stop comes from a deadline.  ``run()`` ending by that exception ends the thread
      quietly.  It never fires after ``run()`` returned.

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
        interrupt: Union[bool, str] = False,
    ) -> None:
        if stopper is None:
            stopper = Stopper()
        else:
            _stopper_arg(stopper)
        mode = _d.mode_arg(interrupt, cooperative_ok=True)
        super().__init__(group, target, name, args, kwargs, daemon=daemon)
        self._stopper = stopper
        self._interrupt: Union[bool, str] = False if mode is None else mode
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
    def interrupt(self) -> Union[bool, str]:
        """How a stop reaches run(): False (cooperative), "checkpoint" or "async"."""
        return self._interrupt

    def stop(self, reason: int = 0) -> bool:
        """Stops the thread's stopper; True if this call stopped it."""
        return self._stopper.stop(reason)

    def stopped(self) -> bool:
        """True once stopped."""
        return self._stopper.is_set()

    def join(self, timeout: Optional[float] = None) -> None:
        """Stops the thread, then waits for it like :meth:`threading.Thread.join`."""
        _timeout_ns(timeout)
        self._stopper.stop()
        super().join(timeout)

    def run(self) -> None:
        """Runs ``target`` (as :meth:`threading.Thread.run`), inside the stopper."""
        super().run()


StoppableThread.run = _inside(StoppableThread.__dict__["run"])  # type: ignore[method-assign]
