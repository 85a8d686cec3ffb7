"""Stops across machines, on gRPC's own cancellation and deadline propagation (needs grpcio).

Server side: ``grpc.server(executor, interceptors=[stopper.grpc.server_interceptor()])`` runs
each handler (unary or streaming) inside its own stopper, interruptible in checkpoint mode;
``stopper.current()`` in the handler is that stopper.  It stops

- with :data:`stopper.REASON_DEADLINE` when the RPC's deadline passes (``time_remaining()``);
- with :data:`stopper.REASON_REQUESTED` when the RPC ends otherwise: the client cancelled it
  (a client-side stop, see :func:`call`), or the connection dropped (the client process died),
  through ``context.add_callback``.

A handler blocked in a checkpoint (``stopper.sleep``, a stopper wait…) then ends by
``StopRequested``; the interceptor turns that into the RPC's end (``CANCELLED`` or
``DEADLINE_EXCEEDED``, which the client no longer waits for).

Client side: ``call(stub.Method, request, stopper=s, **kw)`` sends ``s.remaining()`` as the
RPC's deadline (``timeout=``, unless one is given: then the smaller) and cancels the call when
``s`` stops, raising :class:`stopper.StopRequested`.  Without ``stopper=``, the calling
thread's interruptible scope (if any) is used.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional

import grpc

from ._stopper import Stopper
from ._delivery import checkpoint_stopper
from ._errors import StopRequested
from ._native import REASON_DEADLINE, REASON_REQUESTED

__all__ = ["server_interceptor", "call"]


def _rpc_stopper(context: Any) -> Stopper:
    """A new stopper that stops when the RPC of ``context`` ends or passes its deadline."""
    s = Stopper()
    remaining = context.time_remaining()
    if remaining is not None:
        if remaining <= 0:
            s.stop(REASON_DEADLINE)
        else:
            s.stop_after(remaining, REASON_DEADLINE)

    def ended() -> None:
        # gRPC ends the RPC at its deadline itself, maybe a moment before our own timer fires:
        # an end at (or past) the deadline is the deadline's.
        left = context.time_remaining()
        s.stop(REASON_DEADLINE if left is not None and left <= 0.001 else REASON_REQUESTED)

    if not context.add_callback(ended):
        ended()  # the RPC had already ended
    return s


def _end_by_stop(s: Stopper, context: Any) -> None:
    """The handler ended by its stop: end the RPC with the matching status (nobody may be
    listening any more)."""
    if s.reason == REASON_DEADLINE:
        context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "stopped: the deadline passed")
    context.abort(grpc.StatusCode.CANCELLED, "stopped: the call was cancelled")


def _unary(behavior: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def run(request: Any, context: Any) -> Any:
        s = _rpc_stopper(context)
        try:
            with s, s.interruptible("checkpoint"):
                return behavior(request, context)
        except StopRequested:
            if not s.is_set():
                raise
            _end_by_stop(s, context)

    return run


def _streaming(behavior: Callable[[Any, Any], Iterator[Any]]) -> Callable[[Any, Any], Iterator[Any]]:
    def run(request: Any, context: Any) -> Iterator[Any]:
        s = _rpc_stopper(context)
        # The scopes are entered around each step of the handler's iterator, never held across
        # a yield: gRPC may drop (and so finalize) this generator at any time, on any thread.
        it = None
        while True:
            try:
                with s, s.interruptible("checkpoint"):
                    if it is None:
                        it = iter(behavior(request, context))
                    item = next(it)
            except StopIteration:
                return
            except StopRequested:
                if not s.is_set():
                    raise
                _end_by_stop(s, context)
            yield item

    return run


class _Interceptor(grpc.ServerInterceptor):
    def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        kind = ("unary" if not handler.request_streaming else "stream") + "_" + (
            "unary" if not handler.response_streaming else "stream"
        )
        behavior = getattr(handler, kind)
        if behavior is None:
            return handler
        wrapped = _streaming(behavior) if handler.response_streaming else _unary(behavior)
        make = getattr(grpc, f"{kind}_rpc_method_handler")
        return make(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def server_interceptor() -> grpc.ServerInterceptor:
    """An interceptor for ``grpc.server(..., interceptors=[...])`` that runs each synchronous
    handler inside a stopper stopped by the client's cancel, the deadline or a disconnect."""
    return _Interceptor()


def call(method: Any, request: Any, *, stopper: Optional[Stopper] = None, **kwargs: Any) -> Any:
    """Calls ``method`` (a multi-callable such as ``stub.Method``) with ``request`` and returns
    its response, under the stop of ``stopper`` (or of the thread's interruptible scope).

    ``s.remaining()`` becomes the deadline (``timeout=``; with a ``timeout=`` given, the
    smaller).  When the stopper stops, the call is cancelled (the server's handler, run with
    :func:`server_interceptor`, is stopped) and :class:`stopper.StopRequested` is raised.
    For a response-streaming method, returns an iterator of the responses with the same rule.
    Errors of the call are raised as grpc raises them (``grpc.RpcError``).
    """
    if stopper is not None and not isinstance(stopper, Stopper):
        raise TypeError(f"stopper must be a stopper.Stopper or None, not {type(stopper).__name__}")
    s = stopper if stopper is not None else checkpoint_stopper()
    if s is None:
        return method(request, **kwargs)
    if s.is_set():
        raise StopRequested("stopped before the call was made", reason=s.reason)
    remaining = s.remaining()
    if remaining is not None:
        given = kwargs.get("timeout")
        kwargs["timeout"] = remaining if given is None else min(given, remaining)
    if hasattr(method, "future"):
        fut = method.future(request, **kwargs)
        handle = s.on_stop(lambda reason: fut.cancel())
        try:
            return fut.result()
        except grpc.FutureCancelledError:
            raise StopRequested("stopped: the call was cancelled", reason=s.reason) from None
        except grpc.RpcError as e:
            if s.is_set() and e.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise StopRequested("stopped: the call was cancelled", reason=s.reason) from None
            raise
        finally:
            handle.cancel()
    return _stream_responses(method(request, **kwargs), s)


def _stream_responses(rpc: Any, s: Stopper) -> Iterator[Any]:
    handle = s.on_stop(lambda reason: rpc.cancel())
    try:
        for item in rpc:
            yield item
    except grpc.RpcError as e:
        if s.is_set() and e.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise StopRequested("stopped: the call was cancelled", reason=s.reason) from None
        raise
    finally:
        handle.cancel()
