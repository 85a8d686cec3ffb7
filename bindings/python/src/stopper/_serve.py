"""``stopper.serve(server, s)``: a ``socketserver``/``http.server`` server that serves until
``s`` stops, without ``serve_forever``'s 0.5 s poll, and whose handlers stop with it.

The loop blocks in one wait on the listening socket *and* the stop together
(``Stopper.wait_readable``), handles each connection with ``server.handle_request()``, and
returns as soon as ``s`` stops.  For the time of the call, the server's ``finish_request`` (and
``process_request``/``process_request_thread`` of a ``ThreadingMixIn`` server) are wrapped, as
instance attributes removed again on return, so that:

- each request is handled inside its own child of ``s`` (``stopper.current()`` in the handler),
  interruptible in checkpoint mode: a handler blocked in a checkpoint ends by
  ``StopRequested``;
- on the stop, each open request socket is shut down (``SHUT_RDWR``): a handler blocked in a
  plain ``send``/``recv`` (a client that never reads, or never writes) returns at once with an
  error or an end of file, without any change to the handler;
- an error that the stop caused in a handler (``StopRequested``, the ``OSError`` of the shut
  socket) is not reported through ``handle_error``;
- ``serve`` returns only once every handler thread it started has finished (a handler that
  ignores the stop and blocks elsewhere keeps it waiting).

Forking servers are served, but their child processes are the server's business as usual.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from ._stopper import Stopper
from ._errors import StopRequested

__all__ = ["serve"]


class _Handlers:
    """Counts the requests handed to handler threads, so that serve() can wait for them."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.active = 0

    def started(self) -> None:
        with self.cond:
            self.active += 1

    def ended(self) -> None:
        with self.cond:
            self.active -= 1
            if self.active == 0:
                self.cond.notify_all()

    def wait_all(self) -> None:
        with self.cond:
            while self.active:
                self.cond.wait()


def _shut(request: Any) -> None:
    try:
        request.shutdown(socket.SHUT_RDWR)
    except (OSError, AttributeError):
        pass  # already closed, or not a socket (a UDP server's request tuple)


def serve(server: Any, s: Stopper) -> None:
    """Serves ``server`` (a ``socketserver.BaseServer``) until ``s`` stops, then stops and joins
    the handlers it started and returns.  Does not close the server (``server_close()`` is the
    caller's, as after ``serve_forever``).  Returns at once if ``s`` is already stopped."""
    if not isinstance(s, Stopper):
        raise TypeError(f"serve() needs a stopper.Stopper, not {type(s).__name__}")
    for name in ("handle_request", "finish_request", "fileno"):
        if not callable(getattr(server, name, None)):
            raise TypeError(f"serve() needs a socketserver server, not {type(server).__name__}")
    inst = vars(server)
    wrapped = ("finish_request", "process_request", "process_request_thread")
    if any(n in inst for n in wrapped):
        raise RuntimeError("serve(): this server is already being served by stopper.serve")

    handlers = _Handlers()
    finish = server.finish_request
    threaded = callable(getattr(server, "process_request_thread", None))

    def finish_request(request: Any, client_address: Any) -> None:
        c = s.child()
        closer = c.on_stop(lambda reason: _shut(request))
        try:
            with c, c.interruptible("checkpoint"):
                finish(request, client_address)
        except (StopRequested, OSError):
            if not c.is_set():
                raise  # not ours: the server reports it as usual
        finally:
            closer.cancel()

    inst["finish_request"] = finish_request
    if threaded:
        process_request = server.process_request
        process_request_thread = server.process_request_thread

        def counted_process_request(request: Any, client_address: Any) -> None:
            handlers.started()
            try:
                process_request(request, client_address)
            except BaseException:
                handlers.ended()  # its thread did not start
                raise

        def counted_thread(request: Any, client_address: Any) -> None:
            try:
                process_request_thread(request, client_address)
            finally:
                handlers.ended()

        inst["process_request"] = counted_process_request
        inst["process_request_thread"] = counted_thread
    try:
        while not s.is_set():
            try:
                ready = s.wait_readable(server)
            except StopRequested:
                if s.is_set():
                    break
                raise  # an interruptible scope of this thread stopped: it unwinds serve()
            if ready:
                server.handle_request()
                server.service_actions()
    finally:
        for n in wrapped:
            inst.pop(n, None)
        handlers.wait_all()
