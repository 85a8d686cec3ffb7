"""A gRPC server (its own process) for test_grpc.py: generic handlers with bytes in and out (no
protoc), run through stopper.grpc.server_interceptor().  Prints "port N" once listening, then
one line per handler that ends: "ended METHOD HOW REASON MONOTONIC" (HOW: stopped/returned)."""

import sys
import threading
import time
from concurrent import futures

import grpc

import stopper
import stopper.grpc

out_lock = threading.Lock()


def say(*words):
    with out_lock:
        print(*words, flush=True)


def block(request, context):
    """Blocks in a checkpoint until the RPC's stopper stops."""
    say("started block", time.monotonic())
    try:
        stopper.sleep(float(request.decode() or 60))
    except stopper.StopRequested:
        s = stopper.current()
        say("ended block stopped", s.reason, time.monotonic())
        raise
    say("ended block returned 0", time.monotonic())
    return b"slept"


def remaining(request, context):
    s = stopper.current()
    r = s.remaining()
    return repr(r).encode()


def echo(request, context):
    return request


def stream(request, context):
    say("started stream", time.monotonic())
    how = "closed"  # gRPC dropped the generator at a yield
    try:
        for i in range(1000):
            yield str(i).encode()
            stopper.sleep(0.05)
    except stopper.StopRequested:
        how = "stopped"  # the stop reached it in its checkpoint
        raise
    finally:
        say("ended stream", how, time.monotonic())


def main():
    ident = lambda b: b  # noqa: E731
    handlers = {
        "Block": grpc.unary_unary_rpc_method_handler(block, ident, ident),
        "Remaining": grpc.unary_unary_rpc_method_handler(remaining, ident, ident),
        "Echo": grpc.unary_unary_rpc_method_handler(echo, ident, ident),
        "Stream": grpc.unary_stream_rpc_method_handler(stream, ident, ident),
    }
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        interceptors=[stopper.grpc.server_interceptor()],
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("stopper.test.Peer", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    say("port", port)
    sys.stdin.read()  # until the test closes our stdin
    server.stop(None)


if __name__ == "__main__":
    main()
