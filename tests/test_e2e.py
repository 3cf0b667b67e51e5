"""End-to-end: the real ``phizer`` command, forked, against real origins on 127.0.0.1.

Read-only checks share one instance (2 workers, a master and a slave
origin); tests that kill or stop processes get an instance of their own.
Every instance is stopped by its fixture, even when the test fails.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import PIL
import pytest
from PIL import Image

import phizer
from tests.e2e_support import (
    FRONT_NAME,
    HOST,
    OriginServer,
    PhizerProcess,
    Response,
    http_get,
    pid_alive,
    read_comm,
    run_cli,
    serving_origin,
    wait_until,
    worker_for,
    worker_name,
)
from tests.imagetools import decode, encode, photo, similar

NUM_WORKERS = 2
# Above the front's own front-to-worker budget (1 + 3 + 5 s in the e2e config),
# so a 504 from the front shows up before the client gives up.
CLIENT_TIMEOUT = 12.0
RESTART_SECONDS = 10.0
DOWN_STATUSES = {200, 502, 503, 504}

# The originals as the origin serves them, and decoded: the references for
# the similarity checks start from exactly what phizer receives.
ORIGINALS = {
    "land.jpg": encode(photo(800, 600), "JPEG", quality=95),
    "tall.png": encode(photo(400, 640), "PNG"),
    "tiny.jpg": encode(photo(50, 40), "JPEG", quality=95),
    "alpha.png": encode(photo(320, 240, "RGBA"), "PNG"),
}
LAND, TALL, TINY, ALPHA = (decode(ORIGINALS[name]) for name in ORIGINALS)

Box = tuple[int, int, int, int]


def case(
    path: str,
    source: Image.Image,
    size: tuple[int, int],
    box: Box | None = None,
    fmt: str = "JPEG",
    mode: str = "RGB",
) -> object:
    """One expected result; ``box`` is the source region the reference keeps."""
    return pytest.param(path, source, size, box, fmt, mode, id=path)


def reference(source: Image.Image, box: Box | None, size: tuple[int, int]) -> Image.Image:
    """What Pillow alone makes of ``source``: crop ``box``, then resize."""
    region = source.crop(box) if box else source
    return region.resize(size, Image.Resampling.LANCZOS)


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OriginServer]:
    with serving_origin(tmp_path_factory.mktemp("origin"), ORIGINALS) as server:
        yield server


@pytest.fixture(scope="module")
def slave(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OriginServer]:
    only_here = {"only-on-slave.jpg": encode(photo(300, 200), "JPEG", quality=95)}
    with serving_origin(tmp_path_factory.mktemp("slave"), only_here) as server:
        yield server


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, origin: OriginServer, slave: OriginServer
) -> Iterator[PhizerProcess]:
    """One instance for every check that neither kills nor reconfigures it."""
    process = PhizerProcess(
        tmp_path_factory.mktemp("phizer-shared"), origin, slaves=[slave], num_workers=NUM_WORKERS
    )
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture
def launch(tmp_path: Path, origin: OriginServer) -> Iterator[Callable[..., PhizerProcess]]:
    """Start a private instance (keyword arguments of ``PhizerProcess``)."""
    started: list[PhizerProcess] = []

    def start(**kwargs: object) -> PhizerProcess:
        kwargs.setdefault("num_workers", NUM_WORKERS)
        process = PhizerProcess(tmp_path / f"phizer-{len(started)}", origin, **kwargs)
        started.append(process)
        return process.start()

    try:
        yield start
    finally:
        for process in started:
            process.stop()


def _image(response: Response) -> Image.Image:
    assert response.status == 200, (response.status, response.body[:200])
    return decode(response.body)


def _short_text(response: Response) -> None:
    assert (response.header("Content-Type") or "").startswith("text/plain")
    assert len(response.body) < 300
    assert b"Traceback" not in response.body


def _names_per_worker(pattern: str, count: int) -> list[str]:
    """``count`` file names for each worker, interleaved."""
    buckets: dict[int, list[str]] = {n: [] for n in range(1, NUM_WORKERS + 1)}
    k = 0
    while any(len(names) < count for names in buckets.values()):
        name = pattern.format(k)
        bucket = buckets[worker_for(name, NUM_WORKERS)]
        if len(bucket) < count:
            bucket.append(name)
        k += 1
    return [name for group in zip(*buckets.values(), strict=True) for name in group]


# --------------------------------------------------------------------------
# Sizes and crops


CASE_ARGS = ("path", "source", "size", "box", "fmt", "mode")


@pytest.mark.parametrize(
    CASE_ARGS,
    [
        case("/s100/land.jpg", LAND, (100, 75)),
        case("/sq150/land.jpg", LAND, (150, 150), (100, 0, 700, 600)),
        case("/p200/land.jpg", LAND, (200, 300), (200, 0, 600, 600)),
        case("/l300/land.jpg", LAND, (300, 200), (0, 33, 800, 567)),
        case("/s100/tall.png", TALL, (62, 100), fmt="PNG"),
        case("/sq150/tall.png", TALL, (150, 150), (0, 120, 400, 520), fmt="PNG"),
        case("/p200/tall.png", TALL, (187, 300), fmt="PNG"),
        case("/l300/tall.png", TALL, (300, 200), (0, 187, 400, 453), fmt="PNG"),
        # small images are scaled up
        case("/s100/tiny.jpg", TINY, (100, 80)),
        # transparency is kept in a format that holds it
        case("/s100/alpha.png", ALPHA, (100, 75), fmt="PNG", mode="RGBA"),
        # size codes are case-insensitive
        case("/S100/land.jpg", LAND, (100, 75)),
    ],
)
def test_resize_constraints(
    shared: PhizerProcess,
    path: str,
    source: Image.Image,
    size: tuple[int, int],
    box: Box | None,
    fmt: str,
    mode: str,
) -> None:
    response = shared.get(path)
    image = _image(response)
    assert image.size == size
    assert image.format == fmt
    assert image.mode == mode
    assert response.header("Content-Type") == f"image/{fmt.lower()}"
    assert similar(image, reference(source, box, size)), path


@pytest.mark.parametrize(
    CASE_ARGS,
    [
        # the middle half of the width, then max 100x100
        case("/s100/250x0/750x1000/land.jpg", LAND, (66, 100), (200, 0, 600, 600)),
        # points at 0 are honoured; then the centre square
        case("/sq150/0x0/500x500/land.jpg", LAND, (150, 150), (50, 0, 350, 300)),
        # the middle half of the height, then landscape
        case("/l300/0x250/1000x750/tall.png", TALL, (300, 200), (0, 187, 400, 453), fmt="PNG"),
        # the whole image as crop points
        case("/p200/0x0/1000x1000/land.jpg", LAND, (200, 300), (200, 0, 600, 600)),
        # crop, then a small result
        case("/s100/0x0/100x100/alpha.png", ALPHA, (100, 75), (0, 0, 32, 24), "PNG", "RGBA"),
    ],
)
def test_crops(
    shared: PhizerProcess,
    path: str,
    source: Image.Image,
    size: tuple[int, int],
    box: Box | None,
    fmt: str,
    mode: str,
) -> None:
    image = _image(shared.get(path))
    assert (image.size, image.format, image.mode) == (size, fmt, mode)
    assert similar(image, reference(source, box, size)), path


def test_response_headers(shared: PhizerProcess) -> None:
    response = shared.get("/s100/land.jpg")
    assert response.status == 200
    assert response.header("Server") == f"phizer/{phizer.__version__}"
    assert response.header("Content-Length") == str(len(response.body))
    assert response.header("Connection") == "close"
    assert response.header("Cache-Control") is None  # max_age = 0


def test_a_long_query_string_is_ignored(shared: PhizerProcess) -> None:
    query = "&".join(f"f{n}=1" for n in range(1500))
    assert shared.get("/s100/land.jpg?" + query).body == shared.get("/s100/land.jpg").body


@pytest.mark.parametrize(
    ("method", "target", "status"),
    [
        ("GET", "http://example.com/s100/land.jpg", 400),
        ("OPTIONS", "*", 405),
        ("CONNECT", "example.com:443", 405),
    ],
)
def test_targets_that_are_not_paths_get_phizers_own_answer(
    shared: PhizerProcess, method: str, target: str, status: int
) -> None:
    response = http_get(shared.port, target, method=method)
    assert response.status == status
    assert response.header("Server") == f"phizer/{phizer.__version__}"
    assert response.header("Content-Type") == "text/plain; charset=utf-8"
    assert b"<html" not in response.body and len(response.body) < 100


def test_a_pipelined_request_after_connection_close_is_not_served(
    shared: PhizerProcess, origin: OriginServer
) -> None:
    """keep_alive = false: the first answer says Connection: close, and a
    request the client sent behind it is neither answered nor logged."""
    origin.add("pipelined-second.jpg", ORIGINALS["tiny.jpg"])
    head = "GET /s100/{} HTTP/1.1\r\nHost: phizer\r\n\r\n"
    with socket.create_connection((HOST, shared.port), timeout=10) as connection:
        first, second = head.format("land.jpg"), head.format("pipelined-second.jpg")
        connection.sendall((first + second).encode())
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    assert received.count(b"HTTP/1.1 ") == 1
    assert b"Connection: close" in received
    wait_until(lambda: "/s100/land.jpg" in shared.log_text(), 5, "the first request was logged")
    assert "pipelined-second.jpg" not in shared.log_text()


def test_requests_are_logged(shared: PhizerProcess) -> None:
    assert shared.get("/l300/tall.png").status == 200

    def logged() -> bool:
        return any(
            "GET" in line
            and "/l300/tall.png" in line
            and " 200 " in line
            and HOST in line
            and line.count("ms") >= 2
            for line in shared.log_text().splitlines()
        )

    wait_until(logged, 5.0, lambda: f"no access log line:\n{shared.log_text()[-2000:]}")


# --------------------------------------------------------------------------
# Errors


def test_unknown_size_is_404(shared: PhizerProcess) -> None:
    response = shared.get("/nope/land.jpg")
    assert response.status == 404
    _short_text(response)


def test_missing_image_is_404(
    shared: PhizerProcess, origin: OriginServer, slave: OriginServer
) -> None:
    response = shared.get("/s100/nowhere-at-all.jpg")
    assert response.status == 404
    _short_text(response)
    assert origin.count("nowhere-at-all.jpg") == 1
    assert slave.count("nowhere-at-all.jpg") == 1


@pytest.mark.parametrize(
    "path",
    [
        "/s100/500x0/250x1000/land.jpg",  # left > right
        "/s100/0x500/1000x500/land.jpg",  # top == bottom
        "/s100/0x0/1001x1000/land.jpg",  # beyond 1000
        "/s100/-1x0/1000x1000/land.jpg",  # negative
    ],
)
def test_bad_crop_is_400(shared: PhizerProcess, path: str) -> None:
    response = shared.get(path)
    assert response.status == 400
    _short_text(response)


@pytest.mark.parametrize(
    "path",
    [
        "/s100/../land.jpg",
        "/s100/a/../land.jpg",
        "/s100/%2e%2e/land.jpg",
        "/s100/..%2fland.jpg",
        "/s100/a//land.jpg",
        "/s100/a\\..\\land.jpg",
    ],
)
def test_path_escape_is_400(shared: PhizerProcess, origin: OriginServer, path: str) -> None:
    # http.client sends the path as given: nothing normalises the dots away.
    response = shared.get(path)
    assert response.status == 400
    _short_text(response)
    assert not [p for p in origin.paths() if ".." in p or "%2e" in p.lower()]


# --------------------------------------------------------------------------
# Origins and caches


def test_slave_serves_what_master_lacks(
    shared: PhizerProcess, origin: OriginServer, slave: OriginServer
) -> None:
    image = _image(shared.get("/s100/only-on-slave.jpg"))
    assert image.size == (100, 66)
    assert origin.count("only-on-slave.jpg") == 1
    assert slave.count("only-on-slave.jpg") == 1


def test_caches_spare_the_origin(shared: PhizerProcess, origin: OriginServer) -> None:
    origin.add("cached.jpg", encode(photo(640, 480), "JPEG", quality=95))
    first = shared.get("/s100/cached.jpg")
    assert _image(first).size == (100, 75)
    assert origin.count("cached.jpg") == 1

    again = shared.get("/s100/cached.jpg")  # the front's cache of results
    assert _image(again).size == (100, 75)
    assert again.header("ETag") == first.header("ETag")
    assert origin.count("cached.jpg") == 1

    other = shared.get("/sq150/cached.jpg")  # the worker's cache of originals
    assert _image(other).size == (150, 150)
    assert origin.count("cached.jpg") == 1


def test_routing_is_stable(shared: PhizerProcess, origin: OriginServer) -> None:
    names = _names_per_worker("route-{}.jpg", 4)
    for name in names:
        origin.add(name, encode(photo(96, 64), "JPEG", quality=90))
    variants = ["s100", "sq150", "p200", "l300"]
    variants += [f"{code}/0x0/500x500" for code in ("s100", "sq150", "p200", "l300")]
    for _ in range(2):
        for variant in variants:
            for name in names:
                assert shared.get(f"/{variant}/{name}").status == 200, (variant, name)
    # Every size of a file was made where its original was cached.
    assert {name: origin.count(name) for name in names} == dict.fromkeys(names, 1)


# --------------------------------------------------------------------------
# Processes


def _expect_children(process: PhizerProcess) -> dict[str, int]:
    children = process.children()
    expected = {FRONT_NAME, *(worker_name(i) for i in range(1, NUM_WORKERS + 1))}
    assert set(children) == expected, children
    return children


def _status_while_down(process: PhizerProcess, path: str) -> int:
    started = time.monotonic()
    try:
        status = process.get(path, timeout=CLIENT_TIMEOUT).status
    except OSError as err:  # connection refused/reset or a client timeout
        raise AssertionError(
            f"{path}: {err!r} after {time.monotonic() - started:.1f}s\n{process.log_text()}"
        ) from None
    assert status in DOWN_STATUSES, (path, status)
    return status


def test_killed_worker_is_restarted(
    launch: Callable[..., PhizerProcess], origin: OriginServer
) -> None:
    process = launch()
    victim, bystander = "victim.jpg", "bystander.jpg"
    number = worker_for(victim, NUM_WORKERS)
    while worker_for(bystander, NUM_WORKERS) == number:
        bystander = "x" + bystander
    origin.add(victim, ORIGINALS["land.jpg"])
    origin.add(bystander, ORIGINALS["tall.png"])
    assert process.get(f"/s100/{victim}").status == 200
    assert process.get(f"/s100/{bystander}").status == 200
    assert origin.count(victim) == 1

    old = _expect_children(process)[worker_name(number)]
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: not pid_alive(old), 5.0, f"pid {old} survived SIGKILL")

    # While it is down (and coming back), answers are quick and well-formed;
    # every request asks for a new crop so the front's cache cannot answer.
    seen: list[int] = []
    crops = iter(range(999, 500, -1))
    new = None
    deadline = time.monotonic() + RESTART_SECONDS
    while new is None:
        assert time.monotonic() < deadline, f"not restarted: {seen}\n{process.log_text()}"
        seen.append(_status_while_down(process, f"/s100/0x0/{next(crops)}x1000/{victim}"))
        assert process.get(f"/sq150/0x0/{next(crops)}x1000/{bystander}").status == 200
        pid = process.children().get(worker_name(number))
        new = pid if pid is not None and pid != old else None
    assert read_comm(new) == worker_name(number)

    # Recovered: answers are 200 again, from a worker with an empty cache.
    wait_until(
        lambda: _status_while_down(process, f"/s100/0x0/{next(crops)}x1000/{victim}") == 200,
        RESTART_SECONDS,
        lambda: f"worker did not recover\n{process.log_text()}",
    )
    for code, size in (("sq150", (150, 150)), ("p200", (200, 300)), ("l300", (300, 200))):
        assert _image(process.get(f"/{code}/{victim}")).size == size
    assert origin.count(victim) == 2
    assert _expect_children(process)[worker_name(number)] == new


def test_killed_front_is_restarted(launch: Callable[..., PhizerProcess]) -> None:
    process = launch()
    children = _expect_children(process)
    old = children[FRONT_NAME]
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: not pid_alive(old), 5.0, f"pid {old} survived SIGKILL")
    # The supervisor keeps the listening socket: the connection waits for the
    # new front instead of being refused.
    image = _image(process.get("/sq150/land.jpg", timeout=CLIENT_TIMEOUT))
    assert image.size == (150, 150)
    new = process.wait_for_new_child(FRONT_NAME, old, RESTART_SECONDS)
    assert new != old
    after = _expect_children(process)
    for number in range(1, NUM_WORKERS + 1):  # the workers were left alone
        assert after[worker_name(number)] == children[worker_name(number)]
    assert process.get("/p200/land.jpg").status == 200


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_stop_signal_stops_everything(launch: Callable[..., PhizerProcess], sig: int) -> None:
    process = launch()
    children = _expect_children(process)
    assert process.process is not None
    started = time.monotonic()
    process.process.send_signal(sig)
    status = process.process.wait(timeout=10)
    assert status == 0, process.log_text()
    assert time.monotonic() - started < 5.0
    for name, pid in children.items():
        assert not (pid_alive(pid) and read_comm(pid) == name), f"{name} ({pid}) still runs"
    assert "Traceback" not in process.log_text()


def test_children_die_with_the_supervisor(launch: Callable[..., PhizerProcess]) -> None:
    process = launch()
    children = _expect_children(process)
    os.kill(process.pid, signal.SIGKILL)

    def gone() -> bool:
        return not any(pid_alive(p) and read_comm(p) == n for n, p in children.items())

    wait_until(gone, 10.0, lambda: f"children outlived the supervisor: {children}")


# --------------------------------------------------------------------------
# Command line


def test_version() -> None:
    result = run_cli(["--version"])
    assert result.returncode == 0
    # Pillow-SIMD numbers its releases after Pillow's, with a .postN suffix.
    engine = "Pillow-SIMD" if ".post" in PIL.__version__ else "Pillow"
    assert result.stdout.startswith(f"phizer {phizer.__version__} ({engine} {PIL.__version__}, ")
    assert "AVIF" in result.stdout and result.stdout.endswith(")\n")


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such.conf"
    result = run_cli(["-c", str(missing)])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(missing) in lines[0]


def _valid_config(port: int) -> dict[str, dict[str, str]]:
    return {
        "properties": {"bind_host": HOST, "bind_port": str(port), "num_workers": "1"},
        "master": {"host": HOST, "port": "9"},
        "sizes": {"s100": "100x100"},
    }


def _write_config(path: Path, sections: dict[str, dict[str, str]]) -> Path:
    text = "".join(
        f"[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in options.items()) + "\n"
        for name, options in sections.items()
    )
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("section", "option", "value"),
    [
        ("properties", "bind_port", "abc"),
        ("properties", "image_quality", "best"),
        ("properties", "client_cache_size", "lots"),
        ("master", "port", "eighty"),
        ("sizes", "p1", "300x200 format=gif"),
    ],
)
def test_malformed_value(tmp_path: Path, section: str, option: str, value: str) -> None:
    sections = _valid_config(free_port())
    sections[section][option] = value
    config = _write_config(tmp_path / "bad.conf", sections)
    result = run_cli(["-c", str(config)])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in (section, option, value):
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize("flag", ["-l", "-w"])
def test_invalid_log_level(tmp_path: Path, flag: str) -> None:
    config = _write_config(tmp_path / "ok.conf", _valid_config(free_port()))
    result = run_cli(["-c", str(config), flag, "NOPE"])
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert "NOPE" in result.stderr


def test_busy_port_is_a_one_line_startup_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = _write_config(tmp_path / "ok.conf", _valid_config(port))
        result = run_cli(["-c", str(config), "-H", HOST])
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"cannot listen on {HOST}:{port}" in lines[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def test_flags_override_the_file(launch: Callable[..., PhizerProcess]) -> None:
    # The file names a port that is taken and an address that is not ours
    # (TEST-NET-1): phizer only starts if -p and -H win.
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        process = launch(
            port_via_flag=True,
            file_port=busy.getsockname()[1],
            properties={"bind_host": "192.0.2.1", "max_age": 5, "max_dimension": 3000},
            extra_args=["-H", HOST, "-a", "60", "-d", "150"],
        )
        assert process.port != busy.getsockname()[1]
        response = process.get("/s100/land.jpg")
    assert _image(response).size == (100, 75)
    assert response.header("Cache-Control") == "max-age=60"
    assert response.header("Expires")
    # -d 150: a size with a side at or above it serves the original unresized.
    assert _image(process.get("/sq150/land.jpg")).size == (800, 600)


def test_num_workers_and_debug_flags(launch: Callable[..., PhizerProcess]) -> None:
    process = launch(
        num_workers=3,
        properties={"num_workers": 1, "log_level": "ERROR", "log_level_worker": "ERROR"},
        extra_args=["-n", "3", "-l", "DEBUG"],
    )
    assert set(process.children()) == {FRONT_NAME, "phizer-w1", "phizer-w2", "phizer-w3"}

    # -l DEBUG turns on debug: DEBUG logging in the workers too.
    def worker_debug() -> bool:
        return any(
            " DEBUG " in line and "worker-3" in line for line in process.log_text().splitlines()
        )

    wait_until(worker_debug, 5.0, lambda: f"no worker DEBUG line:\n{process.log_text()}")


def test_disable_cache_flag(launch: Callable[..., PhizerProcess], origin: OriginServer) -> None:
    process = launch(extra_args=["-D"])
    origin.add("uncached.jpg", encode(photo(320, 240), "JPEG", quality=95))
    assert process.get("/s100/uncached.jpg").status == 200
    assert origin.count("uncached.jpg") == 1
    assert process.get("/s100/uncached.jpg").status == 200
    assert origin.count("uncached.jpg") == 2
    assert process.get("/sq150/uncached.jpg").status == 200
    assert origin.count("uncached.jpg") == 3


def _tunables(pid: int) -> str:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    found = [item for item in environ if item.startswith(b"GLIBC_TUNABLES=")]
    return found[0].decode().partition("=")[2] if found else ""
