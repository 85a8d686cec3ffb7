"""asyncio and selectors through fileno()."""

import asyncio
import threading
import time

import pytest

import stopper
from conftest import later


def test_wait_async_wakes_on_stop_from_thread():
    s = stopper.Stopper()

    async def main():
        later(0.05, s.stop)
        t0 = time.monotonic()
        assert await s.wait_async() is True
        return time.monotonic() - t0

    dt = asyncio.run(main())
    assert 0.03 < dt < 1


def test_wait_async_many_waiters_one_reader_and_timeout():
    s = stopper.Stopper()

    async def main():
        assert await s.wait_async(timeout=0.02) is False
        loop = asyncio.get_running_loop()
        waiters = [asyncio.ensure_future(s.wait_async()) for _ in range(50)]
        await asyncio.sleep(0.02)
        assert not any(w.done() for w in waiters)
        loop.call_later(0.02, s.stop)
        res = await asyncio.wait_for(asyncio.gather(*waiters), 5)
        assert res == [True] * 50
        assert await s.wait_async() is True  # already stopped: at once

    asyncio.run(main())


def test_wait_async_cancellation_removes_reader():
    s = stopper.Stopper()

    async def main():
        w = asyncio.ensure_future(s.wait_async())
        await asyncio.sleep(0.01)
        w.cancel()
        with pytest.raises(asyncio.CancelledError):
            await w
        loop = asyncio.get_running_loop()
        # the descriptor is free again for a plain add_reader
        fut = loop.create_future()
        loop.add_reader(s.fileno(), lambda: fut.done() or fut.set_result(1))
        s.stop()
        assert await asyncio.wait_for(fut, 5) == 1
        loop.remove_reader(s.fileno())

    asyncio.run(main())


def test_wait_async_does_not_block_the_loop():
    s = stopper.Stopper()
    ticks = []

    async def ticker():
        while not s.is_set():
            ticks.append(1)
            await asyncio.sleep(0.005)

    async def main():
        asyncio.get_running_loop().call_later(0.1, s.stop)
        await asyncio.gather(s.wait_async(), ticker())

    asyncio.run(main())
    assert len(ticks) >= 5


def test_deadline_wakes_async_waiter():
    s = stopper.Stopper()
    s.stop_after(0.05)
    t0 = time.monotonic()
    assert asyncio.run(s.wait_async()) is True
    assert time.monotonic() - t0 < 1
    assert s.reason == stopper.REASON_DEADLINE
