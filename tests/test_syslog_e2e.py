"""End-to-end: the real ``phizer`` command logging to a syslog socket the test binds.

The access lines of the front arrive on a Unix datagram socket with their
syslog priority, as text or JSON; X-Forwarded-For is believed only from a
trusted proxy; a missing socket means stderr and a single warning.
"""

from __future__ import annotations

import http.client
import json
import socket
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime
from logging.handlers import SysLogHandler
from pathlib import Path

import pytest

from tests.e2e_support import (
    HOST,
    OriginServer,
    PhizerProcess,
    Response,
    serving_origin,
    wait_until,
    worker_for,
)
from tests.imagetools import encode, photo
from tests.syslog_support import Datagram, SyslogSink, pri

NUM_WORKERS = 2
LOCAL0 = SysLogHandler.LOG_LOCAL0
ACCESS_PREFIX = "[front] phizer.access: "
ARRIVAL_SECONDS = 10.0
JSON_ACCESS_KEYS = {
    "time", "level", "logger", "role", "message", "method", "path", "status", "bytes",
    "total_ms", "fetch_ms", "resize_ms", "cache", "worker", "client",
}  # fmt: skip


def names_per_worker(prefix: str) -> dict[int, str]:
    """One file name routed to each worker."""
    names: dict[int, str] = {}
    k = 0
    while len(names) < NUM_WORKERS:
        name = f"{prefix}-{k}.jpg"
        names.setdefault(worker_for(name, NUM_WORKERS), name)
        k += 1
    return names


NAMES = names_per_worker("pic")
IMAGE = encode(photo(160, 120), "JPEG", quality=90)


def request(
    port: int,
    path: str,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    source: str | None = None,
) -> Response:
    """One request, optionally from another loopback source address."""
    connection = http.client.HTTPConnection(
        HOST, port, timeout=10, source_address=(source, 0) if source else None
    )
    try:
        connection.request(method, path, headers=headers or {})
        answer = connection.getresponse()
        return Response(answer.status, answer.headers, answer.read())
    finally:
        connection.close()


def wait_for_datagram(sink: SyslogSink, matches: Callable[[Datagram], bool], what: str) -> Datagram:
    found = wait_until(
        lambda: next((d for d in sink.drain() if matches(d)), None),
        ARRIVAL_SECONDS,
        lambda: f"no datagram for {what}; got:\n" + "\n".join(d.body for d in sink.received),
    )
    assert isinstance(found, Datagram)
    return found


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OriginServer]:
    files = dict.fromkeys(NAMES.values(), IMAGE)
    with serving_origin(tmp_path_factory.mktemp("origin"), files) as server:
        yield server


@pytest.fixture(scope="module")
def socket_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="phz-") as directory:  # short: Unix socket paths
        yield Path(directory)


def start_with_sink(
    workdir: Path, origin: OriginServer, path: Path, **properties: object
) -> tuple[PhizerProcess, SyslogSink]:
    sink = SyslogSink.unix(str(path))
    phizer = PhizerProcess(
        workdir,
        origin,
        num_workers=NUM_WORKERS,
        properties={
            "syslog_facility": "LOG_LOCAL0",
            "syslog_priority": "LOG_INFO",
            "syslog_address": path,
            **properties,
        },
    )
    try:
        phizer.start()
    except BaseException:
        sink.close()
        raise
    return phizer, sink


@pytest.fixture(scope="module")
def text_phizer(
    tmp_path_factory: pytest.TempPathFactory, origin: OriginServer, socket_dir: Path
) -> Iterator[tuple[PhizerProcess, SyslogSink]]:
    phizer, sink = start_with_sink(
        tmp_path_factory.mktemp("text"), origin, socket_dir / "text", trusted_proxies="127.0.0.1"
    )
    try:
        yield phizer, sink
    finally:
        phizer.stop()
        sink.close()


@pytest.fixture(scope="module")
def json_phizer(
    tmp_path_factory: pytest.TempPathFactory, origin: OriginServer, socket_dir: Path
) -> Iterator[tuple[PhizerProcess, SyslogSink]]:
    phizer, sink = start_with_sink(
        tmp_path_factory.mktemp("json"), origin, socket_dir / "json", log_format="json"
    )
    try:
        yield phizer, sink
    finally:
        phizer.stop()
        sink.close()


# --------------------------------------------------------------------------
# Text lines


def access_fields(datagram: Datagram) -> list[str]:
    return datagram.body.removeprefix(ACCESS_PREFIX).split(" ")


def wait_for_access(sink: SyslogSink, uri: str) -> tuple[Datagram, dict[str, str]]:
    datagram = wait_for_datagram(
        sink,
        lambda d: d.body.startswith(ACCESS_PREFIX) and access_fields(d)[1] == uri,
        uri,
    )
    fields = access_fields(datagram)
    assert len(fields) == 10, datagram.body
    named = dict(field.split("=", 1) for field in fields[4:])
    return datagram, {
        "method": fields[0],
        "path": fields[1],
        "status": fields[2],
        "client": fields[3],
        **named,
    }


@pytest.mark.parametrize("worker", sorted(NAMES))
def test_miss_then_hit_lines(text_phizer: tuple[PhizerProcess, SyslogSink], worker: int) -> None:
    phizer, sink = text_phizer
    name = NAMES[worker]
    miss_uri, hit_uri = f"/s100/{name}?try=miss", f"/s100/{name}?try=hit"
    miss_response = request(phizer.port, miss_uri)
    hit_response = request(phizer.port, hit_uri)
    assert (miss_response.status, hit_response.status) == (200, 200)

    datagram, miss = wait_for_access(sink, miss_uri)
    assert datagram.pri == pri(LOCAL0, SysLogHandler.LOG_INFO)
    assert datagram.pid == phizer.child_pid("phizer-front")
    assert (miss["method"], miss["status"], miss["client"]) == ("GET", "200", "127.0.0.1")
    assert (miss["cache"], miss["worker"]) == ("miss", str(worker_for(name, NUM_WORKERS)))
    assert miss["bytes"] == str(len(miss_response.body))
    assert all(miss[key].endswith("ms") for key in ("total", "fetch", "resize"))

    _, hit = wait_for_access(sink, hit_uri)
    assert (hit["cache"], hit["worker"], hit["fetch"]) == ("hit", "-", "-")
    assert hit["bytes"] == str(len(hit_response.body))


def test_error_lines_and_their_priority(text_phizer: tuple[PhizerProcess, SyslogSink]) -> None:
    phizer, sink = text_phizer
    missing = "no-such-picture.jpg"
    not_found = request(phizer.port, f"/s100/{missing}")
    unknown_size = request(phizer.port, "/zz999/pic.jpg")
    assert (not_found.status, unknown_size.status) == (404, 404)

    datagram, line = wait_for_access(sink, f"/s100/{missing}")
    assert datagram.pri == pri(LOCAL0, SysLogHandler.LOG_WARNING)
    # The worker asked the origins: the failure is that worker's.
    assert (line["status"], line["worker"]) == ("404", str(worker_for(missing, NUM_WORKERS)))
    assert line["bytes"] == str(len(not_found.body))
    _, line = wait_for_access(sink, "/zz999/pic.jpg")
    assert (line["status"], line["worker"], line["cache"]) == ("404", "-", "-")


def test_hostile_uri_cannot_forge_a_line(text_phizer: tuple[PhizerProcess, SyslogSink]) -> None:
    phizer, sink = text_phizer
    uri = "/s100/x.jpg%0a%0d[front]%20phizer.access:%20GET%20/forged"
    response = request(phizer.port, uri)
    assert response.status in (400, 404)
    datagram, line = wait_for_access(sink, uri)
    assert len(datagram.body.splitlines()) == 1
    assert line["status"] == str(response.status)
    assert not any(access_fields(d)[1] == "/forged" for d in sink.received)


def test_raw_line_breaks_are_escaped(text_phizer: tuple[PhizerProcess, SyslogSink]) -> None:
    """Tornado refuses C0 controls in the request line but lets through bytes
    that are line breaks to some readers: NEL (0x85), U+2028 in UTF-8, quotes."""
    phizer, sink = text_phizer
    with socket.create_connection((HOST, phizer.port), timeout=10) as client:
        client.sendall(b'GET /s100/a\x85\xe2\x80\xa8"b.jpg HTTP/1.0\r\n\r\n')
        assert client.recv(12).startswith(b"HTTP/1.")
    datagram, line = wait_for_access(sink, "/s100/a\\x85\\xe2\\x80\\xa8\\x22b.jpg")
    assert datagram.body.isascii() and len(datagram.body.splitlines()) == 1
    assert line["status"] == "400"


def test_workers_keep_their_lines_at_debug(text_phizer: tuple[PhizerProcess, SyslogSink]) -> None:
    phizer, sink = text_phizer
    uri = f"/p200/{NAMES[1]}?try=worker"
    assert request(phizer.port, uri).status == 200
    wait_for_access(sink, uri)
    assert not [d for d in sink.drain() if d.body.startswith("[worker-") and "access" in d.body]


def test_forwarded_for_from_the_trusted_proxy(
    text_phizer: tuple[PhizerProcess, SyslogSink],
) -> None:
    phizer, sink = text_phizer
    headers = {"X-Forwarded-For": "198.51.100.1, 203.0.113.5"}
    request(phizer.port, f"/s100/{NAMES[1]}?xff=trusted", headers)
    _, line = wait_for_access(sink, f"/s100/{NAMES[1]}?xff=trusted")
    assert line["client"] == "203.0.113.5"

    request(phizer.port, f"/s100/{NAMES[1]}?xff=garbage", {"X-Forwarded-For": "bogus"})
    _, line = wait_for_access(sink, f"/s100/{NAMES[1]}?xff=garbage")
    assert line["client"] == "127.0.0.1"


def test_forwarded_for_from_an_untrusted_peer(
    text_phizer: tuple[PhizerProcess, SyslogSink],
) -> None:
    phizer, sink = text_phizer
    headers = {"X-Forwarded-For": "203.0.113.5"}
    request(phizer.port, f"/s100/{NAMES[2]}?xff=untrusted", headers, source="127.0.0.2")
    _, line = wait_for_access(sink, f"/s100/{NAMES[2]}?xff=untrusted")
    assert line["client"] == "127.0.0.2"


# --------------------------------------------------------------------------
# JSON lines


def wait_for_json_access(sink: SyslogSink, uri: str) -> tuple[Datagram, dict[str, object]]:
    def matches(datagram: Datagram) -> bool:
        fields = json.loads(datagram.body)
        return fields.get("logger") == "phizer.access" and fields.get("path") == uri

    datagram = wait_for_datagram(sink, matches, uri)
    return datagram, json.loads(datagram.body)


def test_json_access_lines(json_phizer: tuple[PhizerProcess, SyslogSink]) -> None:
    phizer, sink = json_phizer
    for worker, name in NAMES.items():
        uri = f"/l300/{name}"
        response = request(phizer.port, uri)
        assert response.status == 200
        datagram, fields = wait_for_json_access(sink, uri)
        assert datagram.pri == pri(LOCAL0, SysLogHandler.LOG_INFO)
        assert set(fields) == JSON_ACCESS_KEYS
        assert {k: fields[k] for k in ("method", "status", "cache", "worker", "client")} == {
            "method": "GET",
            "status": 200,
            "cache": "miss",
            "worker": worker,
            "client": "127.0.0.1",
        }
        assert fields["bytes"] == len(response.body)
        assert (fields["role"], fields["level"]) == ("front", "INFO")
        assert all(isinstance(fields[k], float) for k in ("total_ms", "fetch_ms", "resize_ms"))
        assert datetime.fromisoformat(str(fields["time"])).tzinfo is not None

        head = request(phizer.port, uri + "?head", method="HEAD")
        assert (head.status, head.body) == (200, b"")
        _, fields = wait_for_json_access(sink, uri + "?head")
        assert (fields["method"], fields["bytes"]) == ("HEAD", 0)
        assert (fields["cache"], fields["worker"]) == ("hit", None)


def test_every_json_line_parses(json_phizer: tuple[PhizerProcess, SyslogSink]) -> None:
    phizer, sink = json_phizer
    request(phizer.port, "/zz999/nothing.jpg")
    wait_for_json_access(sink, "/zz999/nothing.jpg")
    roles = set()
    for datagram in sink.drain():
        fields = json.loads(datagram.body)
        assert {"time", "level", "logger", "role", "message"} <= set(fields)
        roles.add(fields["role"])
    assert {"supervisor", "front"} <= roles  # startup lines of both came over syslog


# --------------------------------------------------------------------------
# No syslog daemon


def test_missing_socket_means_stderr_and_one_warning(
    tmp_path: Path, origin: OriginServer, socket_dir: Path
) -> None:
    missing = socket_dir / "absent"
    phizer = PhizerProcess(
        tmp_path,
        origin,
        num_workers=NUM_WORKERS,
        properties={"syslog_facility": "LOG_LOCAL0", "syslog_address": missing},
    )
    try:
        phizer.start()
        uri = f"/s100/{NAMES[1]}?stderr"
        assert request(phizer.port, uri).status == 200
        wait_until(lambda: uri in phizer.log_text(), ARRIVAL_SECONDS, phizer.log_text)
    finally:
        phizer.stop()
    warnings = [line for line in phizer.log_text().splitlines() if str(missing) in line]
    assert len(warnings) == 1, phizer.log_text()
    assert "WARNING" in warnings[0] and "stderr" in warnings[0]
