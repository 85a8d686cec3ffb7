"""stopper.serve: serves until the stop, returns within milliseconds (no 0.5 s poll), handler
threads run inside children of the stopper and are stopped and joined before it returns."""

import http.client
import http.server
import socket
import socketserver
import threading
import time

import pytest

import stopper


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def _start(server, s):
    box = {}

    def run():
        try:
            stopper.serve(server, s)
        except BaseException as e:  # noqa: BLE001
            box["error"] = e
        box["returned"] = time.monotonic()

    t = threading.Thread(target=run)
    t.start()
    return t, box


def test_http_server_serves_and_returns_promptly_on_stop():
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = repr(stopper.current() is not None).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    s = stopper.Stopper()
    t, box = _start(srv, s)
    try:
        for _ in range(5):
            c = http.client.HTTPConnection(*srv.server_address, timeout=10)
            c.request("GET", "/")
            assert c.getresponse().read() == b"True"  # the handler ran inside a stopper
            c.close()
        lat = []
        time.sleep(0.05)
        t0 = time.monotonic()
        s.stop()
        t.join(10)
        assert not t.is_alive() and "error" not in box
        lat.append(box["returned"] - t0)
        assert lat[0] < 0.3  # well under serve_forever's 0.5 s poll (goal 10 ms: make bench)
    finally:
        srv.server_close()


def test_streaming_handler_to_a_client_that_never_reads_is_stopped_and_joined():
    handler_ended = []
    in_handler = threading.Event()

    class Stream(socketserver.StreamRequestHandler):
        def handle(self):
            in_handler.set()
            try:
                chunk = b"x" * 65536
                while True:
                    self.wfile.write(chunk)  # blocks once the client's buffers are full
            finally:
                handler_ended.append(threading.current_thread())

    srv = Server(("127.0.0.1", 0), Stream)
    s = stopper.Stopper()
    t, box = _start(srv, s)
    clients = []
    try:
        for _ in range(3):
            c = socket.create_connection(srv.server_address, timeout=10)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            clients.append(c)  # never reads
        assert in_handler.wait(10)
        time.sleep(0.2)  # the handlers are now blocked in send
        t0 = time.monotonic()
        s.stop()
        t.join(10)
        assert not t.is_alive(), "serve() did not return"
        assert "error" not in box, box
        assert len(handler_ended) == 3  # every handler had ended when serve returned
        assert all(not th.is_alive() or th is threading.current_thread() for th in handler_ended)
        assert box["returned"] - t0 < 5
    finally:
        for c in clients:
            c.close()
        srv.server_close()


def test_handler_blocked_in_a_checkpoint_ends_by_stop_requested():
    seen = []
    entered = threading.Event()

    class Waiter(socketserver.BaseRequestHandler):
        def handle(self):
            entered.set()
            try:
                stopper.sleep(30)
            except stopper.StopRequested:
                seen.append("stopped")
                raise

    srv = Server(("127.0.0.1", 0), Waiter)
    s = stopper.Stopper()
    errors = []
    srv.handle_error = lambda req, addr: errors.append(addr)
    t, box = _start(srv, s)
    c = socket.create_connection(srv.server_address, timeout=10)
    try:
        assert entered.wait(10)
        s.stop()
        t.join(10)
        assert not t.is_alive() and seen == ["stopped"] and errors == []
    finally:
        c.close()
        srv.server_close()


def test_single_threaded_server_and_repeated_stops():
    class Echo(socketserver.StreamRequestHandler):
        def handle(self):
            self.wfile.write(self.rfile.readline())

    for _ in range(20):
        srv = socketserver.TCPServer(("127.0.0.1", 0), Echo)
        s = stopper.Stopper()
        t, box = _start(srv, s)
        with socket.create_connection(srv.server_address, timeout=10) as c:
            c.sendall(b"hi\n")
            assert c.makefile("rb").readline() == b"hi\n"
        s.stop()
        t.join(10)
        assert not t.is_alive() and "error" not in box
        assert "finish_request" not in vars(srv)  # the server is given back as it was
        srv.server_close()


def test_already_stopped_returns_at_once_and_bad_arguments():
    srv = socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler)
    try:
        s = stopper.Stopper()
        s.stop()
        stopper.serve(srv, s)
        with pytest.raises(TypeError):
            stopper.serve(srv, object())
        with pytest.raises(TypeError):
            stopper.serve(object(), stopper.Stopper())
    finally:
        srv.server_close()
