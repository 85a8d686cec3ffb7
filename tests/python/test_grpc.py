"""stopper.grpc across two processes over 127.0.0.1: a client-side stop ends the server's
handler (blocked in a checkpoint); deadline propagation; a vanished client stops the handler."""

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

grpc = pytest.importorskip("grpc", reason="grpcio is not installed (pip install grpcio)")

import stopper  # noqa: E402
import stopper.grpc as sgrpc  # noqa: E402

PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "grpc_peer")


class Peer:
    """The server process, its port, and the lines it prints."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(PEER, "server.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = self.next(30)
        assert first.startswith("port "), first
        self.port = int(first.split()[1])
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def next(self, timeout=10, prefix=None):
        give_up = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, give_up - time.monotonic()))
            if prefix is None or line.startswith(prefix):
                return line

    def method(self, name, stream=False):
        make = self.channel.unary_stream if stream else self.channel.unary_unary
        return make(f"/stopper.test.Peer/{name}")

    def close(self):
        self.channel.close()
        self.proc.stdin.close()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def peer():
    p = Peer()
    yield p
    p.close()


def test_call_returns_the_response(peer):
    assert sgrpc.call(peer.method("Echo"), b"hello", stopper=stopper.Stopper()) == b"hello"
    assert sgrpc.call(peer.method("Echo"), b"plain") == b"plain"  # no stopper: a plain call


def test_client_stop_ends_the_server_handler(peer):
    for _ in range(5):
        s = stopper.Stopper()
        box = {}

        def client():
            try:
                sgrpc.call(peer.method("Block"), b"60", stopper=s)
            except BaseException as e:  # noqa: BLE001
                box["error"] = e

        t = threading.Thread(target=client)
        t.start()
        peer.next(prefix="started block")
        t0 = time.monotonic()
        s.stop()
        ended = peer.next(prefix="ended block").split()
        t.join(10)
        assert isinstance(box.get("error"), stopper.StopRequested)
        assert ended[2] == "stopped" and int(ended[3]) == stopper.REASON_REQUESTED
        latency = float(ended[4]) - t0  # CLOCK_MONOTONIC is shared by the two processes
        assert latency < 2.0  # goal 50 ms on loopback: measured by make bench


def test_deadline_propagates(peer):
    s = stopper.Stopper()
    s.stop_after(30)
    r = float(sgrpc.call(peer.method("Remaining"), b"", stopper=s))
    s.stop()  # disarm: no deadline left behind for later tests
    assert 20 < r <= 31  # (gRPC rounds the deadline it sends up) the server's handler sees the client's deadline
    # the client's stopper deadline: the client side ends by the stop (or by the deadline)
    s2 = stopper.Stopper()
    s2.stop_after(0.3)
    t0 = time.monotonic()
    with pytest.raises((stopper.StopRequested, grpc.RpcError)):
        sgrpc.call(peer.method("Block"), b"60", stopper=s2)
    ended = peer.next(prefix="ended block").split()
    assert ended[2] == "stopped"
    assert time.monotonic() - t0 < 10
    # the RPC's deadline alone (a plain call with timeout=): the server's handler stops with
    # REASON_DEADLINE
    with pytest.raises(grpc.RpcError) as info:
        peer.method("Block")(b"60", timeout=0.3)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    ended = peer.next(prefix="ended block").split()
    assert ended[2] == "stopped" and int(ended[3]) == stopper.REASON_DEADLINE


def test_streaming_call_stops_both_sides(peer):
    s = stopper.Stopper()
    got = []
    with pytest.raises(stopper.StopRequested):
        for item in sgrpc.call(peer.method("Stream", stream=True), b"", stopper=s):
            got.append(item)
            if len(got) == 3:
                s.stop()
    assert got[:3] == [b"0", b"1", b"2"]
    ended = peer.next(prefix="ended stream").split()
    assert ended[2] in ("stopped", "closed")


def test_already_stopped_sends_nothing_and_bad_stopper(peer):
    s = stopper.Stopper()
    s.stop()
    with pytest.raises(stopper.StopRequested):
        sgrpc.call(peer.method("Block"), b"60", stopper=s)
    with pytest.raises(TypeError):
        sgrpc.call(peer.method("Echo"), b"", stopper=42)


def test_vanished_client_process_stops_the_handler(peer):
    client = subprocess.Popen(
        [sys.executable, os.path.join(PEER, "client.py"), str(peer.port)], stdout=subprocess.PIPE, text=True
    )
    try:
        peer.next(timeout=30, prefix="started block")
        t0 = time.monotonic()
        client.send_signal(signal.SIGKILL)
        ended = peer.next(timeout=30, prefix="ended block").split()
        assert ended[2] == "stopped" and int(ended[3]) == stopper.REASON_REQUESTED
        assert float(ended[4]) - t0 < 10
    finally:
        client.kill()
        client.wait()


def test_grpc_is_not_imported_by_import_stopper():
    from conftest import run_python

    rc, out, err = run_python("import sys, stopper; print('grpc' in sys.modules, 'stopper.grpc' in sys.modules)")
    assert rc == 0, err
    assert out.split() == ["False", "False"]
