"""Channel: a stoppable MPMC queue of Python objects over the native channel."""

from __future__ import annotations

import functools
import itertools
import queue
import threading
from ctypes import byref, c_uint64
TYPE_CHECKING = False  # typing is not imported at run time: `import stopper` stays light
if TYPE_CHECKING:
    from typing import Any, Iterator, NoReturn, Optional, TypeVar

    T = TypeVar("T")

from . import _delivery as _d
from . import _lifecycle as _lc
from . import _native as _n
from ._args import timeout_ns as _timeout_ns
from ._stopper import Stopper, _stopper_arg, one_handle
from ._errors import ChannelClosed, StopRequested

__all__ = ["Channel"]

class Channel:
    """A multi-producer multi-consumer queue whose blocking :meth:`put` and :meth:`get` end
    the moment a stopper stops (:class:`StopRequested`), instead of polling with a timeout.

    Objects travel intact: :meth:`get` returns the very object that was put.  The native
    channel carries a token; the object waits in a lock-protected registry meanwhile.
    ``capacity`` 0 means unbounded.  Inside an interruptible scope (StoppableThread with
    ``interrupt=True``, ``timeout()``), a stop of that scope also ends the wait, with its
    exception.
    """

    def __class_getitem__(cls, item: Any) -> Any:
        """``Channel[int]`` in annotations, as for a generic class."""
        return cls

    def __init__(self, capacity: int = 0) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int):
            raise TypeError(f"capacity must be an int, not {type(capacity).__name__}")
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0 (0: unbounded), got {capacity}")
        h = _n.stopper_chan_new(capacity)
        if not h:
            raise MemoryError("stopper_chan_new: out of memory")
        self._h: Optional[int] = h
        self._capacity = capacity
        self._items: "dict[int, Any]" = {}
        self._lock = threading.Lock()
        self._next = itertools.count(1).__next__
        self._closed = False
        _lc.register_finalizer(self, [functools.partial(_n.stopper_chan_release, h)])

    def _detach(self) -> None:
        self._h = None

    @property
    def capacity(self) -> int:
        """The bound given at creation (0: unbounded)."""
        return self._capacity

    def put(self, obj: T, stopper: Optional[Stopper] = None, timeout: Optional[float] = None) -> None:
        """Puts ``obj``, waiting for room when the channel is full.

        Raises :class:`StopRequested` when ``stopper`` stops first, :class:`queue.Full` after
        ``timeout`` seconds, :class:`ChannelClosed` when the channel is closed."""
        if stopper is not None:
            _stopper_arg(stopper)
        ns = _timeout_ns(timeout)
        cp = _d.checkpoint_stopper()
        tok = self._next()
        with self._lock:
            self._items[tok] = obj
        try:
            if cp is None:
                st = _n.stopper_chan_send(self._h, tok, None if stopper is None else stopper._h, ns)
            else:
                with _d.in_checkpoint() as c, one_handle(stopper, cp) as sh:
                    st = _n.stopper_chan_send(self._h, tok, sh, ns)
                    if st == _n.OK:
                        c.completed()  # handed over: the stop is for the next checkpoint
        except BaseException:
            with self._lock:
                self._items.pop(tok, None)
            raise
        if st == _n.OK:
            return
        with self._lock:
            self._items.pop(tok, None)
        self._fail(st, "put", stopper)

    def get(self, stopper: Optional[Stopper] = None, timeout: Optional[float] = None) -> T:
        """Takes the oldest object, waiting for one when the channel is empty.

        Raises :class:`StopRequested` when ``stopper`` stops first, :class:`queue.Empty`
        after ``timeout`` seconds, :class:`ChannelClosed` once closed and drained."""
        if stopper is not None:
            _stopper_arg(stopper)
        ns = _timeout_ns(timeout)
        cp = _d.checkpoint_stopper()
        item = c_uint64(0)
        if cp is None:
            st = _n.stopper_chan_recv(self._h, byref(item), None if stopper is None else stopper._h, ns)
        else:
            with _d.in_checkpoint() as c, one_handle(stopper, cp) as sh:
                st = _n.stopper_chan_recv(self._h, byref(item), sh, ns)
                if st == _n.OK:
                    c.completed()  # the item must reach the caller
        if st == _n.OK:
            with self._lock:
                obj: T = self._items.pop(item.value)
            return obj
        self._fail(st, "get", stopper)

    def _fail(self, st: int, op: str, stopper: Optional[Stopper]) -> "NoReturn":
        if st == _n.STOPPED:
            raise StopRequested(f"stopped during Channel.{op}()", reason=stopper.reason if stopper else None)
        if st == _n.TIMEDOUT:
            raise (queue.Full if op == "put" else queue.Empty)()
        if st == _n.CLOSED:
            raise ChannelClosed("the channel is closed" + (" and drained" if op == "get" else ""))
        _n.fail(st, f"stopper_chan_{'send' if op == 'put' else 'recv'}")

    def put_nowait(self, obj: T) -> None:
        """:meth:`put` that never waits (queue.Full when full)."""
        self.put(obj, timeout=0)

    def get_nowait(self) -> T:
        """:meth:`get` that never waits (queue.Empty when empty)."""
        return self.get(timeout=0)

    def close(self) -> None:
        """Closes the channel: put() raises ChannelClosed from now on; get() returns what is
        queued, then raises ChannelClosed.  Wakes every blocked put()/get()."""
        self._closed = True
        _n.stopper_chan_close(self._h)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def __len__(self) -> int:
        """The number of queued objects."""
        return int(_n.stopper_chan_len(self._h))

    def __iter__(self) -> Iterator[T]:
        """Yields objects until the channel is closed and drained."""
        while True:
            try:
                yield self.get()
            except ChannelClosed:
                return

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<stopper.Channel {state} len={len(self)} capacity={self._capacity}>"

    def __reduce__(self) -> Any:
        raise TypeError("a Channel cannot be pickled (it is a handle to native memory)")
