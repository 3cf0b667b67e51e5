"""The access line: rendering, escaping, the client behind trusted proxies,
and the entry the front's handler fills in (over HTTP, with fake workers)."""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Iterator
from ipaddress import ip_network

import pytest
from tornado.web import Application

from phizer.web.accesslog import (
    RECORD_ATTR,
    AccessEntry,
    client_address,
    escape,
    json_fields,
    parse_address,
    render_text,
    wire_text,
)
from tests.http_support import PoolTestCase, ServerPool, StubServer, http_origin, make_config, url
from tests.imagetools import encode, photo

FIELDS = 10


def entry(**changes: object) -> AccessEntry:
    values: dict[str, object] = {
        "method": "GET",
        "path": "/s100/a.jpg",
        "status": 200,
        "bytes": 5120,
        "total_ms": 19.94,
        "fetch_ms": 0.91,
        "resize_ms": 14.55,
        "cache": "miss",
        "worker": 2,
        "client": "203.0.113.9",
    }
    values.update(changes)
    return AccessEntry(**values)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# Text and JSON


def test_text_line_fields_in_order() -> None:
    line = render_text(entry())
    assert line.split(" ") == [
        "GET",
        "/s100/a.jpg",
        "200",
        "203.0.113.9",
        "total=19.9ms",
        "fetch=0.9ms",
        "resize=14.6ms",
        "cache=miss",
        "bytes=5120",
        "worker=2",
    ]


def test_text_line_dashes_for_what_does_not_apply() -> None:
    fields = render_text(entry(fetch_ms=None, resize_ms=None, cache=None, worker=None)).split()
    assert fields[5:] == ["fetch=-", "resize=-", "cache=-", "bytes=5120", "worker=-"]


HOSTILE_PATHS = [
    "/s100/a.jpg\n2024-01-01 INFO [front] phizer.access: GET /forged 200",
    "/s100/a\r\nb.jpg",
    "/s100/a b.jpg",
    "/s100/a\tb\x0b\x0c\x1b[31m.jpg",
    "/s100/a\x85b\u2028c\u2029d.jpg",  # line breaks to str.splitlines
    '/s100/"quoted"\\back.jpg',
    "/s100/\x00nul.jpg",
]


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_hostile_path_stays_one_field_of_one_line(path: str) -> None:
    line = render_text(entry(path=path, method="G\nET", client="x y"))
    assert len(line.splitlines()) == 1
    fields = line.split(" ")
    assert len(fields) == FIELDS
    assert all(field.isascii() and field.isprintable() for field in fields)


def test_escapes_cannot_be_confused_with_text() -> None:
    assert escape("\n") == "\\x0a"
    assert escape("\\x0a") != escape("\n")  # the backslash itself is escaped
    assert escape("%0a") == "%0a"  # an encoded newline is text, not a line break
    assert escape("/plain/ascii-_.~%20") == "/plain/ascii-_.~%20"


def test_escape_of_every_character_is_visible_ascii() -> None:
    samples = [chr(code) for code in range(0x3000)] + ["\U0001f600", "\ufeff", "\udcff"]
    for char in samples:
        escaped = escape(char)
        assert escaped.isascii() and escaped.isprintable() and " " not in escaped, repr(char)


def test_raw_utf8_bytes_are_escaped_byte_by_byte() -> None:
    as_tornado_reads_it = "/s100/caf\u00e9.jpg".encode().decode("latin-1")
    assert escape(as_tornado_reads_it) == "/s100/caf\\xc3\\xa9.jpg"


def test_json_fields_are_named_and_null_when_absent() -> None:
    fields = json_fields(entry(fetch_ms=None, cache=None, worker=None))
    assert fields == {
        "method": "GET",
        "path": "/s100/a.jpg",
        "status": 200,
        "bytes": 5120,
        "total_ms": 19.9,
        "fetch_ms": None,
        "resize_ms": 14.6,
        "cache": None,
        "worker": None,
        "client": "203.0.113.9",
    }


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_json_keeps_a_hostile_path_on_one_line(path: str) -> None:
    line = json.dumps(json_fields(entry(path=path)))
    assert len(line.splitlines()) == 1
    assert json.loads(line)["path"] == path


def test_wire_text_decodes_utf8_sent_raw() -> None:
    raw = "/s100/caf\u00e9.jpg".encode().decode("latin-1")
    assert wire_text(raw) == "/s100/caf\u00e9.jpg"
    assert wire_text("/s100/\xe9.jpg") == "/s100/\xe9.jpg"  # not UTF-8: left alone
    assert json_fields(entry(path=raw))["path"] == "/s100/caf\u00e9.jpg"


# --------------------------------------------------------------------------
# The client behind trusted proxies

LOCAL = (ip_network("127.0.0.1/32"),)
PROXIES = (ip_network("10.0.0.0/8"), ip_network("127.0.0.1/32"), ip_network("::1/128"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        pytest.param("198.51.100.7", ["203.0.113.9"], (), "198.51.100.7", id="no-trust"),
        pytest.param("198.51.100.7", ["203.0.113.9"], LOCAL, "198.51.100.7", id="untrusted-peer"),
        pytest.param("127.0.0.1", [], LOCAL, "127.0.0.1", id="trusted-peer-without-header"),
        pytest.param("127.0.0.1", ["203.0.113.9"], LOCAL, "203.0.113.9", id="one-hop"),
        pytest.param(
            "127.0.0.1", ["203.0.113.9, 10.1.2.3"], PROXIES, "203.0.113.9", id="chain-of-proxies"
        ),
        pytest.param(
            "127.0.0.1", ["6.6.6.6, 203.0.113.9"], LOCAL, "203.0.113.9", id="spoofed-left-part"
        ),
        pytest.param(
            "127.0.0.1",
            ["6.6.6.6", "203.0.113.9, 10.0.0.5"],
            PROXIES,
            "203.0.113.9",
            id="several-headers",
        ),
        pytest.param("127.0.0.1", ["10.0.0.2, 10.0.0.1"], PROXIES, "10.0.0.2", id="all-trusted"),
        pytest.param(
            "127.0.0.1", ["garbage, 203.0.113.9"], LOCAL, "203.0.113.9", id="garbage-left"
        ),
        pytest.param("127.0.0.1", ["203.0.113.9, unknown"], LOCAL, "127.0.0.1", id="garbage-right"),
        pytest.param(
            "127.0.0.1",
            ["203.0.113.9, 10.0.0.1, garbage"],
            PROXIES,
            "127.0.0.1",
            id="garbage-stops-at-last-trusted",
        ),
        pytest.param(
            "127.0.0.1",
            ["203.0.113.9, garbage, 10.0.0.1"],
            PROXIES,
            "10.0.0.1",
            id="garbage-after-a-trusted-hop",
        ),
        pytest.param("127.0.0.1", ["1.2.3.4 5.6.7.8"], LOCAL, "127.0.0.1", id="space-inside"),
        pytest.param("127.0.0.1", ["fe80::1%eth0 x"], LOCAL, "127.0.0.1", id="scope-id"),
        pytest.param("127.0.0.1", ["300.1.1.1"], LOCAL, "127.0.0.1", id="not-an-address"),
        pytest.param("127.0.0.1", [" , 203.0.113.9 ,"], LOCAL, "203.0.113.9", id="empty-items"),
        pytest.param("::1", ["2001:DB8:0::1"], PROXIES, "2001:db8::1", id="ipv6"),
        pytest.param("::1", ["[2001:db8::2]"], PROXIES, "2001:db8::2", id="ipv6-brackets"),
        pytest.param(
            "::ffff:127.0.0.1", ["203.0.113.9"], LOCAL, "203.0.113.9", id="ipv4-mapped-peer"
        ),
        pytest.param("::1", ["203.0.113.9"], LOCAL, "::1", id="v6-peer-v4-network"),
    ],
)
def test_client_address(peer: str, forwarded: list[str], trusted: tuple, expected: str) -> None:
    assert client_address(peer, forwarded, trusted) == expected


def test_parse_address_refuses_text_around_an_address() -> None:
    for text in ("1.2.3.4\n", "1.2.3.4:80", "fe80::1%eth0", "", "[", "[]", "::1 "):
        assert parse_address(text) is None, repr(text)
    assert str(parse_address("[::1]")) == "::1"


# --------------------------------------------------------------------------
# What the front's handler puts in the entry (real front, fake workers)

THUMB = encode(photo(200, 150), "JPEG", quality=90)
FILE = "photo.jpg"


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def entries(self) -> list[AccessEntry]:
        return [getattr(record, RECORD_ATTR) for record in self.records]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    logger = logging.getLogger("phizer.access")
    handler, level = Recorder(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class FrontEntryCase(PoolTestCase):
    """A front over two fake workers (that answer THUMB), then one whose
    second worker's port refuses connections; 127.0.0.1 is a trusted proxy."""

    def get_app(self) -> Application:
        self.pool = ServerPool(self.io_loop)
        self.workers = [self.pool.stub(StubServer(default=THUMB))[0] for _ in range(2)]
        self.config = make_config(http_origin("master", 9), num_workers=2, trusted_proxies=LOCAL)
        app, _ = self.pool.front_app(self.config, [url(w.port) for w in self.workers])
        return app

    @pytest.fixture(autouse=True)
    def _recorder(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def last(self) -> tuple[AccessEntry, int]:
        record = self.recorder.records[-1]
        return getattr(record, RECORD_ATTR), record.levelno

    def test_miss_then_hit(self) -> None:
        expected_worker = zlib.crc32(FILE.encode()) % 2 + 1
        response = self.get(f"/s100/{FILE}?v=1")
        assert response.code == 200
        miss, level = self.last()
        assert (miss.method, miss.path, miss.status) == ("GET", f"/s100/{FILE}?v=1", 200)
        assert (miss.cache, miss.worker, miss.bytes) == ("miss", expected_worker, len(THUMB))
        assert level == logging.INFO
        assert self.workers[expected_worker - 1].total == 1
        self.get(f"/s100/{FILE}")
        hit, _ = self.last()
        assert (hit.cache, hit.worker, hit.bytes) == ("hit", None, len(THUMB))
        assert hit.total_ms >= 0 and hit.fetch_ms is None

    def test_head_and_304_send_no_body_bytes(self) -> None:
        etag = self.get(f"/s100/{FILE}").headers["ETag"]
        head = self.get(f"/s100/{FILE}", method="HEAD")
        assert (head.code, head.body) == (200, b"")
        assert self.last()[0].bytes == 0
        not_modified = self.get(f"/s100/{FILE}", headers={"If-None-Match": etag})
        assert not_modified.code == 304
        assert self.last()[0].bytes == 0

    def test_error_before_routing_has_no_worker(self) -> None:
        response = self.get(f"/nosuchsize/{FILE}")
        assert response.code == 404
        error, level = self.last()
        assert (error.status, error.worker, error.cache) == (404, None, None)
        assert error.bytes == len(response.body)
        assert level == logging.WARNING

    def test_unreachable_worker_is_named_and_logged_as_error(self) -> None:
        _, dead_port = self.pool.reserve_port()
        live = url(self.workers[0].port)
        app, _ = self.pool.front_app(self.config, [live, url(dead_port)])
        base = url(self.pool.start(app))
        name = next(f"f{k}.jpg" for k in range(100) if zlib.crc32(f"f{k}.jpg".encode()) % 2)
        response = self.get(f"/s100/{name}", base)
        assert response.code == 503
        error, level = self.last()
        assert (error.status, error.worker, error.cache) == (503, 2, None)
        assert level == logging.ERROR

    def test_forwarded_for_from_a_trusted_peer(self) -> None:
        self.get(f"/s100/{FILE}", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.9"})
        assert self.last()[0].client == "203.0.113.9"
        self.get(f"/s100/{FILE}", headers={"X-Forwarded-For": "not-an-ip"})
        assert self.last()[0].client == "127.0.0.1"

    def test_forwarded_for_ignored_without_trusted_proxies(self) -> None:
        config = make_config(http_origin("master", 9), num_workers=2)
        app, _ = self.pool.front_app(config, [url(w.port) for w in self.workers])
        base = url(self.pool.start(app))
        self.get(f"/s100/{FILE}", base, headers={"X-Forwarded-For": "203.0.113.9"})
        assert self.last()[0].client == "127.0.0.1"
