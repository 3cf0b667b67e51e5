"""Signals against the real command: graceful stop and reload without failures.

A gated origin holds requests until the test opens the gate, so "in flight"
is a fact the test checks (the origin has seen the request), not a guess.
"""

from __future__ import annotations

import http.client
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e_support import (
    HOST,
    OriginServer,
    PhizerProcess,
    pid_alive,
    serving_origin,
    wait_until,
)
from tests.imagetools import encode, photo
from tests.ports import serve_in_thread

IMAGE = encode(photo(64, 48), "JPEG")


class GatedOrigin:
    """Answers every GET with ``IMAGE``, but only once the gate is open."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self._arrived = 0
        self._lock = threading.Lock()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with origin._lock:
                    origin._arrived += 1
                origin.gate.wait(30)
                self.send_response(200)
                self.send_header("Content-Length", str(len(IMAGE)))
                self.end_headers()
                self.wfile.write(IMAGE)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self._thread = serve_in_thread(self._server)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def arrived(self) -> int:
        with self._lock:
            return self._arrived

    def stop(self) -> None:
        self.gate.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[OriginServer]:
    files = {f"pic-{number}.jpg": IMAGE for number in range(40)}
    with serving_origin(tmp_path / "origin", files) as server:
        yield server


@pytest.fixture
def gated() -> Iterator[GatedOrigin]:
    server = GatedOrigin()
    yield server
    server.stop()


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[PhizerProcess]]:
    processes: list[PhizerProcess] = []
    yield processes
    for process in processes:
        process.stop(signal.SIGKILL)


def _launch(started: list[PhizerProcess], process: PhizerProcess) -> PhizerProcess:
    started.append(process)
    return process.start()


def _fetch(port: int, path: str, timeout: float = 30.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _in_background(port: int, paths: list[str]) -> tuple[list[threading.Thread], list[object]]:
    results: list[object] = []
    lock = threading.Lock()

    def run(path: str) -> None:
        try:
            outcome: object = _fetch(port, path)[0]
        except OSError as err:
            outcome = err
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(path,)) for path in paths]
    for thread in threads:
        thread.start()
    return threads, results


def _all_gone(pids: list[int]) -> bool:
    return not any(pid_alive(pid) for pid in pids)


def test_sigterm_finishes_requests_in_flight(
    tmp_path: Path, origin: OriginServer, gated: GatedOrigin, started: list[PhizerProcess]
) -> None:
    process = _launch(
        started,
        PhizerProcess(tmp_path / "run", origin, slaves=[gated], properties={"origin_timeout": 20}),
    )
    children = list(process.children().values())
    paths = [f"/s100/slow-{n}.jpg" for n in range(6)]
    threads, results = _in_background(process.port, paths)
    wait_until(lambda: gated.arrived >= len(paths), 10, "requests did not reach the origin")
    process.process.send_signal(signal.SIGTERM)
    # The front stops accepting at once, but what it holds carries on.
    wait_until(lambda: "finishing" in process.log_text(), 10, "front did not start draining")
    assert process.process.poll() is None
    gated.gate.set()
    for thread in threads:
        thread.join(30)
    assert results == [200] * len(paths)
    assert process.process.wait(15) == 0
    wait_until(lambda: _all_gone(children), 5, "children outlived the supervisor")


def test_shutdown_timeout_bounds_the_wait(
    tmp_path: Path, origin: OriginServer, gated: GatedOrigin, started: list[PhizerProcess]
) -> None:
    process = _launch(
        started,
        PhizerProcess(
            tmp_path / "run",
            origin,
            slaves=[gated],
            properties={"origin_timeout": 20, "shutdown_timeout": 1},
        ),
    )
    children = list(process.children().values())
    threads, results = _in_background(process.port, ["/s100/stuck.jpg"])
    wait_until(lambda: gated.arrived >= 1, 10, "request did not reach the origin")
    began = time.monotonic()
    process.process.send_signal(signal.SIGTERM)
    assert process.process.wait(15) == 0
    # One shutdown_timeout for the front, then the workers stop at once.
    assert time.monotonic() - began < 8
    assert "still running after shutdown_timeout" in process.log_text()
    wait_until(lambda: _all_gone(children), 5, "children outlived the supervisor")
    for thread in threads:
        thread.join(10)
    assert len(results) == 1 and results[0] != 200


def test_reload_under_load_fails_no_request(
    tmp_path: Path, origin: OriginServer, started: list[PhizerProcess]
) -> None:
    # Generous origin timeouts: this is about reloading, not about slow
    # origins (a busy machine must not turn a slow fetch into a failure here).
    slow_ok = {"origin_timeout": 15, "origin_connect_timeout": 10}
    process = _launch(started, PhizerProcess(tmp_path / "run", origin, properties=slow_ok))
    stop = threading.Event()
    failures: list[object] = []
    served = [0]
    lock = threading.Lock()

    def client(worker: int) -> None:
        number = worker
        while not stop.is_set():
            path = f"/{('s100', 'sq150', 'p200')[number % 3]}/pic-{number % 40}.jpg"
            try:
                status, body = _fetch(process.port, path, 10)
                ok = status == 200 and body[:2] == b"\xff\xd8"
            except OSError as err:
                status, ok = err, False  # type: ignore[assignment]
            with lock:
                served[0] += 1
                if not ok:
                    failures.append((path, status))
            number += 7

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    try:
        for round_number in range(3):
            before = process.children()
            process.sizes[f"new{round_number}"] = "50x50"
            process.config_path.write_text(process.config_text())
            process.process.send_signal(signal.SIGHUP)
            wait_until(
                lambda before=before: _replaced(process.children(), before),
                15,
                lambda: f"children not replaced; log:\n{process.log_text()}",
            )
            status, _ = _fetch(process.port, f"/new{round_number}/pic-1.jpg")
            assert status == 200
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert served[0] > 30
    assert failures == []
    assert "reload failed" not in process.log_text()


def test_broken_config_on_reload_keeps_serving(
    tmp_path: Path, origin: OriginServer, started: list[PhizerProcess]
) -> None:
    process = _launch(started, PhizerProcess(tmp_path / "run", origin))
    before = process.children()
    process.config_path.write_text("[properties]\nnum_workers = many\n")
    process.process.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload failed" in process.log_text(), 10, "reload failure not logged")
    assert "num_workers" in process.log_text()
    assert process.children() == before
    assert _fetch(process.port, "/s100/pic-2.jpg")[0] == 200


def test_reload_can_change_the_number_of_workers(
    tmp_path: Path, origin: OriginServer, started: list[PhizerProcess]
) -> None:
    process = _launch(started, PhizerProcess(tmp_path / "run", origin, num_workers=2))
    before = process.children()
    process.num_workers = 3
    process.config_path.write_text(process.config_text())
    process.process.send_signal(signal.SIGHUP)
    names = {"phizer-front", "phizer-w1", "phizer-w2", "phizer-w3"}
    wait_until(
        lambda: set(process.children()) == names and _replaced(process.children(), before),
        15,
        lambda: f"no third worker; log:\n{process.log_text()}",
    )
    for number in range(12):
        assert _fetch(process.port, f"/s100/pic-{number}.jpg")[0] == 200


def _replaced(now: dict[str, int], before: dict[str, int]) -> bool:
    """Every old child has exited and a new one runs under each old name."""
    return set(now) >= set(before) and _all_gone(list(before.values()))
