"""stopper.aio: to_thread (cancel -> stop -> the await ends once the thread ended), wait (many
waiters, asyncio and trio), cancel_on_stop.  trio/anyio tests skip when they are missing."""

import asyncio
import contextvars
import sys
import threading
import time

import pytest

import stopper
import stopper.aio as aio

try:
    import trio
except ImportError:  # pragma: no cover - the test venv has it
    trio = None
try:
    import anyio
except ImportError:  # pragma: no cover
    anyio = None

needs_trio = pytest.mark.skipif(trio is None, reason="trio is not installed (pip install trio)")
needs_anyio = pytest.mark.skipif(anyio is None or trio is None, reason="anyio/trio are not installed")
py311 = pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout and TaskGroup are 3.11+")

VAR = contextvars.ContextVar("VAR", default="unset")


def _threads_named():
    return [t for t in threading.enumerate() if t.name == "stopper.aio.to_thread"]


def _blocking(started, ended, seconds=30):
    """A thread body that blocks in a checkpoint and records how it left."""
    started.set()
    try:
        stopper.sleep(seconds)
        ended.append("returned")
    except stopper.StopRequested:
        ended.append("stopped")
        raise


# ---------------------------------------------------------------- to_thread, asyncio
def test_to_thread_returns_and_carries_context_and_current():
    async def main():
        VAR.set("caller")
        outer = stopper.Stopper()
        with outer:
            def fn(a, b=0):
                s = stopper.current()
                return a + b, VAR.get(), s is not None and s != outer, threading.get_ident()

            r = await aio.to_thread(fn, 1, b=2)
        return r, outer

    (total, var, own, ident), outer = asyncio.run(main())
    assert total == 3 and var == "caller" and own and ident != threading.get_ident()


def test_to_thread_child_of_callers_current_stops_with_it():
    async def main():
        outer = stopper.Stopper()
        with outer:
            asyncio.get_running_loop().call_later(0.05, outer.stop)
            with pytest.raises(stopper.StopRequested):
                await aio.to_thread(stopper.sleep, 30)

    asyncio.run(main())


def test_to_thread_raises_fn_exception():
    def boom():
        raise KeyError("x")

    async def main():
        with pytest.raises(KeyError):
            await aio.to_thread(boom)

    asyncio.run(main())


def test_cancel_stops_thread_and_await_ends_after_it():
    async def main():
        started, ended = threading.Event(), []
        task = asyncio.ensure_future(aio.to_thread(_blocking, started, ended))
        while not started.is_set():
            await asyncio.sleep(0.001)
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert ended == ["stopped"]  # the thread had ended when the await ended
        assert time.monotonic() - t0 < 5
        assert not _threads_named()

    asyncio.run(main())


def test_to_thread_under_wait_for_repeated():
    async def main():
        for _ in range(30):
            started, ended = threading.Event(), []
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(aio.to_thread(_blocking, started, ended), 0.005 + 0.01 * (_ % 3))
            assert ended in ([], ["stopped"])  # stopped, or cancelled before it started
            if started.is_set():
                assert ended == ["stopped"]
            assert not _threads_named()

    asyncio.run(main())


@py311
def test_to_thread_under_asyncio_timeout_and_taskgroup():
    async def main():
        for i in range(20):
            started, ended = threading.Event(), []
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.005 + 0.005 * (i % 3)):
                    await aio.to_thread(_blocking, started, ended)
            assert not started.is_set() or ended == ["stopped"]
            assert not _threads_named()

        # a TaskGroup: a sibling fails, the to_thread task is cancelled and its thread stopped
        started, ended = threading.Event(), []

        async def fail_soon():
            while not started.is_set():
                await asyncio.sleep(0.001)
            raise ValueError("sibling")

        with pytest.raises(BaseException) as info:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(aio.to_thread(_blocking, started, ended))
                tg.create_task(fail_soon())
        assert info.group_contains(ValueError) if hasattr(info, "group_contains") else True
        assert ended == ["stopped"]
        assert not _threads_named()

    asyncio.run(main())


def test_second_cancel_does_not_detach_a_stubborn_thread():
    async def main():
        started = threading.Event()
        finished = []

        def stubborn():
            started.set()
            time.sleep(0.3)  # ignores the stop (not a checkpoint)
            finished.append(True)
            return "done"

        task = asyncio.ensure_future(aio.to_thread(stubborn))
        while not started.is_set():
            await asyncio.sleep(0.001)
        task.cancel()
        await asyncio.sleep(0.02)
        task.cancel()  # again
        with pytest.raises(asyncio.CancelledError):
            await task
        assert finished == [True]
        assert not _threads_named()

    asyncio.run(main())


def test_to_thread_bad_arguments():
    async def main():
        with pytest.raises(TypeError):
            await aio.to_thread(42)
        with pytest.raises(ValueError):
            await aio.to_thread(int, interrupt="maybe")

    asyncio.run(main())
    with pytest.raises(RuntimeError):  # no asyncio loop, no trio run
        _run_outside()


def _run_outside():
    coro = aio.wait(stopper.Stopper(), 0)
    try:
        coro.send(None)
    finally:
        coro.close()


# ---------------------------------------------------------------- wait / cancel_on_stop, asyncio
def test_asyncio_many_waiters_100_times():
    async def main():
        for _ in range(100):
            s = stopper.Stopper()
            waiters = [asyncio.ensure_future(aio.wait(s)) for _ in range(8)]
            await asyncio.sleep(0)
            threading.Thread(target=s.stop).start()
            assert await asyncio.wait_for(asyncio.gather(*waiters), 10) == [True] * 8

    asyncio.run(main())


def test_asyncio_wait_timeout_and_already_stopped():
    async def main():
        s = stopper.Stopper()
        t0 = time.monotonic()
        assert await aio.wait(s, 0.02) is False
        assert time.monotonic() - t0 >= 0.015
        s.stop()
        assert await aio.wait(s) is True
        with pytest.raises(TypeError):
            await aio.wait(object())
        with pytest.raises(ValueError):
            await aio.wait(s, -1)

    asyncio.run(main())


def test_asyncio_cancel_on_stop():
    async def main():
        s = stopper.Stopper()
        asyncio.get_running_loop().call_later(0.02, lambda: threading.Thread(target=s.stop).start())
        with pytest.raises(stopper.StopRequested):
            async with aio.cancel_on_stop(s):
                await asyncio.sleep(30)
        # the task is usable afterwards: no cancel left pending
        await asyncio.sleep(0.01)
        # a block that ends first is not cancelled
        s2 = stopper.Stopper()
        async with aio.cancel_on_stop(s2):
            await asyncio.sleep(0)
        s2.stop()
        await asyncio.sleep(0.01)
        # a cancellation from elsewhere passes through as CancelledError
        s3 = stopper.Stopper()

        async def inner():
            async with aio.cancel_on_stop(s3):
                await asyncio.sleep(30)

        t = asyncio.ensure_future(inner())
        await asyncio.sleep(0.01)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t

    asyncio.run(main())


# ---------------------------------------------------------------- trio / anyio
@needs_trio
def test_trio_many_waiters_100_times():
    async def main():
        for _ in range(100):
            s = stopper.Stopper()
            results = []

            async def waiter():
                results.append(await aio.wait(s))

            async with trio.open_nursery() as n:
                for _ in range(8):
                    n.start_soon(waiter)
                await trio.sleep(0)
                threading.Thread(target=s.stop).start()
            assert results == [True] * 8
        s = stopper.Stopper()
        assert await aio.wait(s, 0.01) is False

    trio.run(main)


@needs_trio
def test_trio_cancel_scope_stops_to_thread():
    async def main():
        for i in range(20):
            started, ended = threading.Event(), []
            with trio.move_on_after(0.005 + 0.005 * (i % 3)) as scope:
                await aio.to_thread(_blocking, started, ended)
            assert scope.cancelled_caught
            assert not started.is_set() or ended == ["stopped"]
            assert not _threads_named()
        VAR.set("trio-caller")
        assert await aio.to_thread(VAR.get) == "trio-caller"

    trio.run(main)


@needs_trio
def test_trio_cancel_on_stop():
    async def main():
        s = stopper.Stopper()
        threading.Timer(0.02, s.stop).start()
        with pytest.raises(stopper.StopRequested):
            async with aio.cancel_on_stop(s):
                await trio.sleep(30)
        s2 = stopper.Stopper()
        async with aio.cancel_on_stop(s2):
            await trio.sleep(0)

    trio.run(main)


@needs_anyio
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_anyio_cancel_scope_and_waiters(backend):
    async def main():
        started, ended = threading.Event(), []
        with anyio.move_on_after(0.02):
            await aio.to_thread(_blocking, started, ended)
        assert not started.is_set() or ended == ["stopped"]
        assert not _threads_named()
        s = stopper.Stopper()
        results = []

        async def waiter():
            results.append(await aio.wait(s))

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(waiter)
            await anyio.sleep(0.01)
            s.stop()
        assert results == [True] * 5

    anyio.run(main, backend=backend)


def test_import_stopper_does_not_import_frameworks():
    from conftest import run_python

    rc, out, err = run_python(
        "import sys, stopper\n"
        "print(sorted(m for m in ('trio', 'anyio', 'grpc', 'concurrent.futures', 'stopper.aio', "
        "'stopper.futures', 'stopper.subprocess', 'stopper.grpc') if m in sys.modules))"
    )
    assert rc == 0, err
    for name in ("trio", "anyio", "grpc", "concurrent.futures", "stopper.aio", "stopper.futures",
                 "stopper.subprocess", "stopper.grpc"):
        assert repr(name) not in out, out
