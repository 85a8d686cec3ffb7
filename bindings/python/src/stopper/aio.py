"""Cancel means stop, for async code: asyncio, and trio (so anyio) when they are installed.

- ``await to_thread(fn, *args, interrupt="checkpoint", **kwargs)``: runs ``fn`` in a new
  thread inside a fresh stopper (a child of the caller's ``stopper.current()``, if any), with
  the caller's context variables.  Cancelling the awaiting task (``task.cancel()``,
  ``asyncio.timeout``/``wait_for``, a ``TaskGroup``, a trio or anyio cancel scope) stops that
  stopper, and the await ends (raising the cancellation) only once the thread has ended: no
  thread is left behind.  A function that ignores the stop keeps the await waiting until it
  returns; a second cancellation does not detach it.
- ``await wait(s, timeout=None) -> bool``: like ``s.wait()``, for any number of concurrent
  waiters (each has its own stop callback: no shared descriptor, so trio's one-waiter-per-fd
  rule does not apply).
- ``async with cancel_on_stop(s): ...``: the block is cancelled when ``s`` stops, and the
  block then ends with :class:`stopper.StopRequested` (as ``asyncio.timeout`` ends with
  ``TimeoutError``).  A cancellation that came from elsewhere passes through unchanged.

Which library is running is asked of ``sniffio`` when it is installed (trio and anyio depend on
it), else found from ``sys.modules``: trio is never imported by this module unless a trio run is
what calls it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sys
import threading
from typing import Any, AsyncIterator, Callable, Optional

from ._args import timeout_ns as _timeout_ns
from ._stopper import Stopper, current
from ._errors import StopRequested

__all__ = ["to_thread", "wait", "cancel_on_stop"]

_MODES = ("checkpoint", "async", True, False, None)


def _library() -> str:
    """'asyncio' or 'trio': the async library running the calling task."""
    sniffio = sys.modules.get("sniffio")
    if sniffio is None:
        try:
            import sniffio  # type: ignore[no-redef]
        except ImportError:
            sniffio = None
    if sniffio is not None:
        try:
            lib = sniffio.current_async_library()
        except Exception:  # noqa: BLE001 - sniffio.AsyncLibraryNotFoundError
            lib = None
        if lib in ("asyncio", "trio"):
            return lib
        if lib is not None:
            raise RuntimeError(f"stopper.aio supports asyncio and trio, not {lib}")
    if asyncio._get_running_loop() is not None:
        return "asyncio"
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
            return "trio"
        except RuntimeError:
            pass
    raise RuntimeError("stopper.aio must be called from an asyncio task or a trio task")


def _soon_asyncio(loop: asyncio.AbstractEventLoop, fn: Callable[[], Any]) -> None:
    """Schedules ``fn`` on ``loop`` from any thread; nothing if the loop is closed."""
    try:
        loop.call_soon_threadsafe(fn)
    except RuntimeError:
        pass


def _soon_trio(token: Any, fn: Callable[[], Any]) -> None:
    """Schedules ``fn`` in the trio run of ``token`` from any thread; nothing once it ended."""
    try:
        token.run_sync_soon(fn)
    except Exception:  # noqa: BLE001 - trio.RunFinishedError
        pass


# ---------------------------------------------------------------- wait
async def wait(s: Stopper, timeout: Optional[float] = None) -> bool:
    """Awaits the stop of ``s``: True once stopped, False after ``timeout`` seconds (None: no
    limit).  Any number of tasks may wait on one stopper at once, under asyncio or trio."""
    if not isinstance(s, Stopper):
        raise TypeError(f"wait() needs a stopper.Stopper, not {type(s).__name__}")
    _timeout_ns(timeout)
    if _library() == "trio":
        return await _wait_trio(s, timeout)
    return await _wait_asyncio(s, timeout)


async def _wait_asyncio(s: Stopper, timeout: Optional[float]) -> bool:
    if s.is_set():
        return True
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def wake() -> None:
        if not fut.done():
            fut.set_result(None)

    handle = s.on_stop(lambda reason: _soon_asyncio(loop, wake))
    timer = loop.call_later(timeout, wake) if timeout is not None else None
    try:
        await fut
    finally:
        handle.cancel()
        if timer is not None:
            timer.cancel()
    return s.is_set()


async def _wait_trio(s: Stopper, timeout: Optional[float]) -> bool:
    import trio

    if s.is_set():
        await trio.lowlevel.checkpoint()
        return True
    token = trio.lowlevel.current_trio_token()
    event = trio.Event()
    handle = s.on_stop(lambda reason: _soon_trio(token, event.set))
    try:
        with trio.move_on_after(timeout if timeout is not None else float("inf")):
            await event.wait()
    finally:
        handle.cancel()
    return s.is_set()


# ---------------------------------------------------------------- cancel_on_stop
@contextlib.asynccontextmanager
async def cancel_on_stop(s: Stopper) -> AsyncIterator[None]:
    """``async with cancel_on_stop(s):`` cancels the block when ``s`` stops (also when it is
    already stopped: at the block's first await); the block then raises
    :class:`stopper.StopRequested`.  Other cancellations pass through unchanged."""
    if not isinstance(s, Stopper):
        raise TypeError(f"cancel_on_stop() needs a stopper.Stopper, not {type(s).__name__}")
    if _library() == "trio":
        import trio

        token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            handle = s.on_stop(lambda reason: _soon_trio(token, scope.cancel))
            try:
                yield
            finally:
                handle.cancel()
        if scope.cancelled_caught:
            raise StopRequested("cancel_on_stop: the stopper stopped", reason=s.reason)
        return

    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("cancel_on_stop() must be used inside an asyncio task")
    loop = asyncio.get_running_loop()
    state = {"inside": True, "fired": False}

    def fire() -> None:  # on the loop's thread
        if state["inside"] and not state["fired"]:
            state["fired"] = True
            task.cancel()

    handle = s.on_stop(lambda reason: _soon_asyncio(loop, fire))
    try:
        yield
    except asyncio.CancelledError:
        state["inside"] = False
        if state["fired"] and _uncancel(task) == 0:
            raise StopRequested("cancel_on_stop: the stopper stopped", reason=s.reason) from None
        raise
    else:
        state["inside"] = False
        if state["fired"]:
            _uncancel(task)  # our cancel came too late to be raised in the block
    finally:
        state["inside"] = False
        handle.cancel()


def _uncancel(task: "asyncio.Task[Any]") -> int:
    """Takes back one ``task.cancel()`` of ours (3.11+ counts them, so that an enclosing
    ``asyncio.timeout`` or TaskGroup still sees its own); the number still pending.  Before
    3.11 there is no count: 0."""
    uncancel = getattr(task, "uncancel", None)
    return uncancel() if uncancel is not None else 0


# ---------------------------------------------------------------- to_thread
async def to_thread(fn: Callable[..., Any], *args: Any, interrupt: Any = "checkpoint", **kwargs: Any) -> Any:
    """Runs ``fn(*args, **kwargs)`` in a new thread inside a fresh stopper and awaits it.

    The stopper is a child of the caller's ``stopper.current()`` (if any) and is what
    ``stopper.current()`` returns in ``fn``; ``fn`` is interruptible by it in ``interrupt``
    mode (``"checkpoint"``, ``"async"``/``True``, or ``False``: cooperative).  The caller's
    context variables are copied into the thread, as ``asyncio.to_thread`` does.

    Cancelling the awaiting task stops the stopper; the await raises the cancellation only
    once the thread has ended (whether ``fn`` then returned, failed or raised
    ``StopRequested``).  Raises what ``fn`` raised otherwise.
    """
    if not callable(fn):
        raise TypeError(f"to_thread() needs a callable, not {type(fn).__name__}")
    if not any(interrupt is m or (isinstance(m, str) and interrupt == m) for m in _MODES):
        raise ValueError(f"interrupt must be 'checkpoint', 'async', True or False, not {interrupt!r}")
    lib = _library()
    parent = current()
    s = parent.child() if parent is not None else Stopper()
    ctx = contextvars.copy_context()
    outcome: list = []

    def body() -> Any:
        with s:
            if interrupt is False or interrupt is None:
                return fn(*args, **kwargs)
            with s.interruptible(interrupt):
                return fn(*args, **kwargs)

    def run(notify: Callable[[], None]) -> None:
        try:
            outcome.append((True, ctx.run(body)))
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting task
            outcome.append((False, e))
        finally:
            notify()

    if lib == "trio":
        await _join_trio(s, run)
    else:
        await _join_asyncio(s, run)
    ok, value = outcome[0]
    if ok:
        return value
    try:
        raise value
    finally:
        del value, outcome[:]


async def _join_asyncio(s: Stopper, run: Callable[[Callable[[], None]], None]) -> None:
    loop = asyncio.get_running_loop()
    ended = loop.create_future()

    def done() -> None:
        if not ended.done():
            ended.set_result(None)

    t = threading.Thread(target=run, args=(lambda: _soon_asyncio(loop, done),), name="stopper.aio.to_thread")
    t.start()
    cancelled: Optional[BaseException] = None
    while True:
        try:
            await asyncio.shield(ended)
            break
        except asyncio.CancelledError as e:
            if cancelled is None:
                cancelled = e
                s.stop()
            # a second cancellation does not detach the thread: keep waiting for it
    t.join()  # it has notified: this only waits for the thread's last steps
    if cancelled is not None:
        raise cancelled


async def _join_trio(s: Stopper, run: Callable[[Callable[[], None]], None]) -> None:
    import trio

    token = trio.lowlevel.current_trio_token()
    ended = trio.Event()
    t = threading.Thread(target=run, args=(lambda: _soon_trio(token, ended.set),), name="stopper.aio.to_thread")
    t.start()
    try:
        await ended.wait()
    except BaseException:
        s.stop()
        with trio.CancelScope(shield=True):
            await ended.wait()
        t.join()
        raise
    t.join()
