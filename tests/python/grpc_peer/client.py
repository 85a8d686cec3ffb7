"""A gRPC client process for test_grpc.py: calls Block on 127.0.0.1:PORT and waits forever
(the test kills this process to make the server's peer vanish)."""

import sys

import grpc

channel = grpc.insecure_channel(f"127.0.0.1:{sys.argv[1]}")
block = channel.unary_unary("/stopper.test.Peer/Block")
print("calling", flush=True)
block(b"60")
