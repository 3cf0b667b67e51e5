"""Free loopback ports for the servers tests and benchmarks start, and a
thread to run a test server on.

Standard library only: bench/perf.py imports it before it has a venv.
"""

from __future__ import annotations

import random
import socket
import socketserver
import threading
from collections.abc import Iterable

HOST = "127.0.0.1"
# Ports below the usual ephemeral range (32768-60999), so outgoing
# connections of this machine rarely take the block we picked.
PORT_RANGE = (15000, 32000)
PORT_ATTEMPTS = 50


def free_port_block(count: int, exclude: Iterable[int] = ()) -> int:
    """A port p such that p..p+count-1 are all bindable on 127.0.0.1 right now."""
    excluded = set(exclude)
    for _ in range(PORT_ATTEMPTS):
        base = random.randint(PORT_RANGE[0], PORT_RANGE[1] - count)
        block = range(base, base + count)
        if excluded.intersection(block):
            continue
        if all(_bindable(port) for port in block):
            return base
    raise RuntimeError(f"no block of {count} free ports found")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def serve_in_thread(server: socketserver.BaseServer) -> threading.Thread:
    """Run ``server`` on a daemon thread; ``server.shutdown()`` ends it."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    return thread
