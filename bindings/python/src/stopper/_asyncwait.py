"""Stopper.wait_async: awaiting a stop in asyncio through the stopper's descriptor (imported
on first use, with asyncio)."""

from __future__ import annotations

import asyncio

from ._args import timeout_ns as _timeout_ns

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

# (loop, handle) -> [shared future, number of waiters, fd]: one reader per stopper and loop.
_aio_waits: "dict[tuple, list]" = {}


async def wait_async(s: Any, timeout: Optional[float] = None) -> bool:
    """See :meth:`stopper.Stopper.wait_async`."""
    _timeout_ns(timeout)
    if s.is_set():
        return True
    loop = asyncio.get_running_loop()
    key = (loop, s._h)
    st = _aio_waits.get(key)
    if st is None:
        fd = s.fileno()
        fut = loop.create_future()

        def ready() -> None:
            loop.remove_reader(fd)
            _aio_waits.pop(key, None)
            if not fut.done():
                fut.set_result(True)

        try:
            loop.add_reader(fd, ready)
        except NotImplementedError:  # a loop without readers (e.g. Proactor): a thread
            return await loop.run_in_executor(None, s.wait, timeout)
        st = _aio_waits[key] = [fut, 0, fd]
    st[1] += 1
    try:
        if timeout is None:
            await asyncio.shield(st[0])
            return True
        try:
            await asyncio.wait_for(asyncio.shield(st[0]), timeout)
            return True
        except asyncio.TimeoutError:
            return s.is_set()
    finally:
        st[1] -= 1
        if st[1] == 0 and not st[0].done():
            loop.remove_reader(st[2])
            _aio_waits.pop(key, None)
            st[0].cancel()
