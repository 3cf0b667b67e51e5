"""End-to-end: every case of the hostile corpus against the real ``phizer`` command.

One instance (2 workers, small limits) serves the whole corpus, with a
scripted master, a slave, and a third origin that redirects point to.
After each case a fresh request routed to the same worker must still be
answered, and at the end no child may have died. A worker killed while a
request is in flight gets its own instance.

The killed-front and killed-idle-worker restarts are covered by
``tests/test_e2e.py`` (``test_killed_front_is_restarted``,
``test_killed_worker_is_restarted``).
"""

from __future__ import annotations

import http.client
import itertools
import os
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e_support import (
    DEFAULT_SIZES,
    HOST,
    PhizerProcess,
    Response,
    http_get,
    wait_until,
    worker_for,
    worker_name,
)
from tests.hostile_corpus import (
    SIZE,
    SIZES,
    Case,
    Limits,
    build_corpus,
    jpeg,
    jpeg_scan_bomb,
)
from tests.hostile_origin import HostileOrigin, NeverAnswer, Serve, SlowChunked
from tests.imagetools import decode

NUM_WORKERS = 2
LIMITS = Limits()
CORPUS = build_corpus(LIMITS)
CLIENT_TIMEOUT = 20.0  # above the front's worker budget, so a hang shows as one
REFUSED = (400, 404, 405, 414)
GOOD_NAME = "good.jpg"  # what the URL cases point at, were they let through


@dataclass
class Stack:
    master: HostileOrigin
    slave: HostileOrigin
    elsewhere: HostileOrigin
    phizer: PhizerProcess
    children: dict[str, int] = field(default_factory=dict)
    crops: Iterator[int] = field(default_factory=lambda: itertools.count(999, -1))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    elsewhere = HostileOrigin().start()
    master = HostileOrigin(redirect_base=elsewhere.base_url).start()
    slave = HostileOrigin().start()
    origins = (elsewhere, master, slave)
    phizer = PhizerProcess(
        tmp_path_factory.mktemp("phizer-hostile"),
        master,  # type: ignore[arg-type]  # the same interface as OriginServer
        slaves=[slave],  # type: ignore[list-item]
        sizes={**DEFAULT_SIZES, **SIZES},
        properties=LIMITS.properties(),
        num_workers=NUM_WORKERS,
    )
    try:
        _script(master, slave, elsewhere)
        phizer.start()
        yield Stack(master, slave, elsewhere, phizer, phizer.children())
    finally:
        phizer.stop()
        for origin in origins:
            origin.stop()


def _script(master: HostileOrigin, slave: HostileOrigin, elsewhere: HostileOrigin) -> None:
    good = jpeg()
    master.add(GOOD_NAME, good)
    for case in CORPUS:
        if case.origin_path and case.origin_behaviour is not None:
            master.script(case.origin_path, case.origin_behaviour)
        if case.origin_path and case.slave_behaviour is not None:
            slave.script(case.origin_path, case.slave_behaviour)
        for path, data in case.served:
            master.add(path, data)
        for target in case.untouched:  # real images: following a redirect would "work"
            elsewhere.add(target, good)
            master.add(target, good)


# --------------------------------------------------------------------------
# Requests


def send(port: int, case: Case) -> Response:
    if case.raw:
        return raw_request(port, case.method, case.path)
    return http_get(port, case.path, CLIENT_TIMEOUT, case.method)


def raw_request(port: int, method: str, path: str) -> Response:
    """The request line exactly as given (UTF-8 and control bytes included)."""
    with socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT) as sock:
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
        sock.sendall(head.encode("utf-8"))
        answer = http.client.HTTPResponse(sock, method=method)
        answer.begin()
        return Response(answer.status, answer.headers, answer.read())


def good_request(stack: Stack, filename: str) -> int:
    """A new (uncached) request served by the worker that ``filename`` routes to."""
    ready = stack.phizer.ready_files[worker_for(filename, NUM_WORKERS)]
    path = f"/{SIZE}/0x0/{next(stack.crops)}x1000/{ready}"
    try:
        return http_get(stack.phizer.port, path, CLIENT_TIMEOUT).status
    except OSError as err:
        raise AssertionError(f"no answer to a good request: {err!r}") from None


# --------------------------------------------------------------------------
# The corpus


def _origin_counts(stack: Stack, case: Case) -> tuple[int, int]:
    if case.origin_path:
        return stack.master.count(case.origin_path), stack.slave.count(case.origin_path)
    return stack.master.total(), stack.slave.total()


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_hostile_case(stack: Stack, case: Case) -> None:
    before = _origin_counts(stack, case)
    started = time.monotonic()
    try:
        response = send(stack.phizer.port, case)
    except OSError as err:
        response = None
        problems = [f"no response: {err!r} after {time.monotonic() - started:.1f}s"]
    else:
        problems = check_response(case, response, time.monotonic() - started)
    problems += check_origins(stack, case, before)
    alive = good_request(stack, case.filename)
    if alive != 200:
        problems.append(f"the next good request got {alive}")
    assert not problems, f"{case.name} ({case.method} {case.path[:120]!r}):\n  " + "\n  ".join(
        problems
    )


def check_response(case: Case, response: Response, elapsed: float) -> list[str]:
    if response.status != case.expected_status:
        return [
            f"status {response.status}, expected {case.expected_status}; "
            f"body {response.body[:160]!r}; {elapsed:.2f}s"
        ]
    problems: list[str] = []
    if case.max_seconds is not None and elapsed > case.max_seconds:
        problems.append(f"took {elapsed:.2f}s, limit {case.max_seconds:.2f}s")
    if case.min_seconds is not None and elapsed < case.min_seconds:
        problems.append(f"took {elapsed:.2f}s, expected at least {case.min_seconds:.2f}s")
    if response.status == 200:
        problems += check_image(case, response)
    else:
        problems += check_error_body(response)
    if response.status == 405:
        allowed = {m.strip() for m in (response.header("Allow") or "").split(",")}
        if not {"GET", "HEAD"} <= allowed:
            problems.append(f"Allow header {response.header('Allow')!r}")
    return problems


def check_image(case: Case, response: Response) -> list[str]:
    try:
        image = decode(response.body)
    except Exception as err:  # anything Pillow cannot open is the failure we report
        return [f"the 200 body does not open: {err!r}"]
    problems = []
    if case.expected_size is not None and image.size != case.expected_size:
        problems.append(f"size {image.size}, expected {case.expected_size}")
    if case.expected_format is not None and image.format != case.expected_format:
        problems.append(f"format {image.format}, expected {case.expected_format}")
    content_type = response.header("Content-Type")
    if case.expected_type is not None and content_type != case.expected_type:
        problems.append(f"Content-Type {content_type!r}, expected {case.expected_type!r}")
    if case.max_body is not None and len(response.body) > case.max_body:
        problems.append(f"{len(response.body)} bytes, expected at most {case.max_body}")
    return problems


def check_error_body(response: Response) -> list[str]:
    """Short plain text; an empty body is Tornado refusing the request line itself."""
    problems = []
    content_type = response.header("Content-Type") or ""
    if response.body and not content_type.startswith("text/plain"):
        problems.append(f"error Content-Type {content_type!r}")
    if len(response.body) > 300 or b"Traceback" in response.body:
        problems.append(f"error body {response.body[:300]!r}")
    return problems


def check_origins(stack: Stack, case: Case, before: tuple[int, int]) -> list[str]:
    problems = []
    master, slave = _origin_counts(stack, case)
    if case.origin_hits is not None and master - before[0] != case.origin_hits:
        problems.append(f"master saw {master - before[0]} requests, expected {case.origin_hits}")
    if case.origin_hits == 0 and slave != before[1]:
        problems.append(f"slave saw {slave - before[1]} requests, expected none")
    for target in case.untouched:
        if stack.elsewhere.count(target) or stack.master.count(target):
            problems.append(f"the redirect to {target} was followed")
    behaviour = case.origin_behaviour
    if isinstance(behaviour, SlowChunked) and case.origin_path:
        stream = stack.master.stream(case.origin_path)
        if stream is not None and stream.completed:
            problems.append(f"read the whole {stream.sent}-byte chunked body")
    return problems


def test_no_child_died(stack: Stack) -> None:
    """Runs after the corpus (file order): the same children, no restart, no bug."""
    assert stack.phizer.children() == stack.children
    log = stack.phizer.log_text()
    assert "restarting" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


# --------------------------------------------------------------------------
# Processes


def test_worker_killed_mid_request(tmp_path: Path) -> None:
    """A request in flight at a worker that dies is answered at once, not
    after the origin timeout; the worker comes back and serves again."""
    origin_timeout = 10.0
    hanging = "hang/forever.jpg"
    master = HostileOrigin().start()
    master.script(hanging, NeverAnswer())
    phizer = PhizerProcess(
        tmp_path,
        master,  # type: ignore[arg-type]
        properties={"origin_timeout": origin_timeout, "origin_connect_timeout": 1},
        num_workers=NUM_WORKERS,
    )
    try:
        phizer.start()
        name = worker_name(worker_for("forever.jpg", NUM_WORKERS))
        before = phizer.children()
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(_timed_get, phizer.port, f"/{SIZE}/{hanging}")
            wait_until(lambda: master.count(hanging) == 1, 10.0, "the request never reached")
            killed = time.monotonic()
            os.kill(before[name], signal.SIGKILL)
            response, answered = pending.result(timeout=CLIENT_TIMEOUT)
        assert response.status in (502, 503), (response.status, response.body)
        assert answered - killed < origin_timeout / 4, f"answered after {answered - killed:.1f}s"

        new = phizer.wait_for_new_child(name, before[name])
        assert new != before[name]
        ready = phizer.ready_files[worker_for("forever.jpg", NUM_WORKERS)]
        wait_until(
            lambda: phizer.get(f"/{SIZE}/0x0/500x1000/{ready}").status == 200,
            10.0,
            lambda: f"the restarted worker does not serve\n{phizer.log_text()[-2000:]}",
        )
        after = phizer.children()
        assert {k: v for k, v in after.items() if k != name} == {
            k: v for k, v in before.items() if k != name
        }
    finally:
        phizer.stop()
        master.stop()


def test_a_decode_over_budget_leaves_the_worker_free(tmp_path: Path) -> None:
    """A file that passes the structure limits and still decodes for
    seconds: an unrelated image on the same worker is answered within 2 s
    meanwhile, and the slow one gets 504 at ``decode_timeout``."""
    decode_timeout = 1.5
    slow = "slow/bomb.jpg"
    master = HostileOrigin().start()
    # Thousands of scans over 16 MP: seconds of decoding from 220 kB.
    master.script(slow, Serve(jpeg_scan_bomb(4000, (4000, 4000))))
    phizer = PhizerProcess(
        tmp_path,
        master,  # type: ignore[arg-type]
        properties={"decode_timeout": decode_timeout, "max_jpeg_scans": 100_000},
        num_workers=1,
    )
    try:
        phizer.start()
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(_timed_get, phizer.port, f"/{SIZE}/{slow}")
            wait_until(lambda: master.count(slow) == 1, 10.0, "the slow request never reached")
            asked = time.monotonic()
            good = http_get(phizer.port, f"/{SIZE}/0x0/900x1000/{phizer.ready_files[1]}")
            good_answered = time.monotonic()
            response, slow_answered = pending.result(timeout=CLIENT_TIMEOUT)
        assert good.status == 200, good.body
        assert good_answered - asked < 2.0, f"answered after {good_answered - asked:.1f}s"
        assert response.status == 504, (response.status, response.body)
        assert b"render" in response.body
        assert slow_answered > good_answered  # not served before the slow one was given up
        assert phizer.get(f"/{SIZE}/0x0/800x1000/{phizer.ready_files[1]}").status == 200
        assert "Traceback" not in phizer.log_text()
    finally:
        phizer.stop()
        master.stop()


def _timed_get(port: int, path: str) -> tuple[Response, float]:
    response = http_get(port, path, CLIENT_TIMEOUT)
    return response, time.monotonic()


def test_origin_stop_releases_held_connections() -> None:
    """The scripted origin itself: stop ends a held connection and its thread."""
    origin = HostileOrigin().start()
    origin.script("held.jpg", NeverAnswer())
    origin.script("fine.jpg", Serve(b"x"))
    client = socket.create_connection((HOST, origin.port), timeout=5)
    try:
        client.sendall(b"GET /held.jpg HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(lambda: origin.live_connections() == 1, 5.0, "the request never arrived")
        assert http_get(origin.port, "/fine.jpg").status == 200  # others still served
        started = time.monotonic()
        origin.stop()
        assert time.monotonic() - started < 2.0
        assert client.recv(100) == b""  # closed without an answer
        assert origin.live_handlers() == 0
    finally:
        client.close()
        origin.stop()
