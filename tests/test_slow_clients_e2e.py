"""Slow and greedy clients against the real command: they are cut off, others are served."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e_support import HOST, PhizerProcess, serving_origin, wait_until
from tests.imagetools import encode, photo

CLIENT_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PhizerProcess]:
    root = tmp_path_factory.mktemp("slow")
    files = {"pic.jpg": encode(photo(300, 200), "JPEG")}
    with serving_origin(root / "origin", files) as origin:
        process = PhizerProcess(
            Path(root / "run"),
            origin,
            properties={"client_timeout": CLIENT_TIMEOUT, "max_client_connections": 40},
        )
        try:
            yield process.start()
        finally:
            process.stop()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=5)
    sock.settimeout(5)
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    """True when the server closed (or reset) the connection without answering."""
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_slowloris_headers_are_cut_off_and_others_still_served(server: PhizerProcess) -> None:
    slow = [_connect(server.port) for _ in range(20)]
    try:
        for sock in slow:
            sock.sendall(b"GET /s100/pic.jpg HTTP/1.1\r\nHost: x\r\n")
        began = time.monotonic()
        # A trickle of header bytes does not extend the deadline for the head.
        while time.monotonic() - began < CLIENT_TIMEOUT / 2:
            for sock in slow:
                sock.sendall(b"X-a: b\r\n")
            assert server.get("/s100/pic.jpg").status == 200
        for sock in slow:
            assert _closed_by_server(sock)
        assert time.monotonic() - began < CLIENT_TIMEOUT + 4
    finally:
        for sock in slow:
            sock.close()


def test_idle_connections_are_closed_after_client_timeout(server: PhizerProcess) -> None:
    sock = _connect(server.port)
    try:
        began = time.monotonic()
        assert _closed_by_server(sock)
        assert CLIENT_TIMEOUT * 0.5 <= time.monotonic() - began < CLIENT_TIMEOUT + 4
    finally:
        sock.close()


def test_connections_beyond_the_limit_are_refused_then_served_again(
    server: PhizerProcess,
) -> None:
    held = [_connect(server.port) for _ in range(40)]
    try:
        wait_until(lambda: _accepted_and_dropped(server.port), 5, "connection over limit kept")
    finally:
        for sock in held:
            sock.close()
    # Once the holders are gone, ordinary requests succeed again.
    wait_until(lambda: _served(server), 5, "not served after the holders left")


def test_oversized_request_head_is_refused(server: PhizerProcess) -> None:
    sock = _connect(server.port)
    try:
        sock.sendall(b"GET /s100/pic.jpg HTTP/1.1\r\nHost: x\r\nX-big: " + b"a" * 70_000)
        assert _closed_by_server(sock)
    finally:
        sock.close()
    assert server.get("/s100/pic.jpg").status == 200


def _accepted_and_dropped(port: int) -> bool:
    sock = _connect(port)
    try:
        sock.sendall(b"GET /s100/pic.jpg HTTP/1.0\r\n\r\n")
        return _closed_by_server(sock)
    except (BrokenPipeError, ConnectionResetError):
        return True
    finally:
        sock.close()


def _served(server: PhizerProcess) -> bool:
    try:
        return server.get("/s100/pic.jpg").status == 200
    except OSError:
        return False  # the server may not have seen the holders go yet
