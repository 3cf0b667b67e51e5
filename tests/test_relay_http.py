"""Originals served untouched pass through the front as they arrive, not held whole."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

from PIL import Image
from tornado.iostream import IOStream, StreamClosedError
from tornado.tcpclient import TCPClient
from tornado.testing import gen_test
from tornado.web import Application, RequestHandler

from phizer.web.relay import Head, Relay
from phizer.web.urls import ImageRequest
from tests.http_support import (
    PoolTestCase,
    ServerPool,
    StubServer,
    count_requests,
    http_origin,
    make_config,
    url,
)
from tests.imagetools import encode

MIB = 1024 * 1024


def noise_png(side: int) -> bytes:
    """A PNG that does not compress: about 3 bytes a pixel."""
    return encode(Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)), "PNG")


# 4.3 MB; "huge" (4000x4000) is above the default max_dimension (3000), so
# every request for it is the original's bytes.
BIG = noise_png(1200)
SMALL = noise_png(100)


# A strong ETag: quoted, without the weak W/ prefix.
STRONG_ETAG = r'^"[!#-~]+"$'


class RelayTestCase(PoolTestCase):
    """A front over one real worker and an origin holding BIG and SMALL."""

    front_settings: dict[str, object] = {}

    def get_app(self) -> Application:
        self.pool = ServerPool(self.io_loop)
        self.origin, origin_port = self.pool.stub(
            StubServer(files={"big.png": BIG, "small.png": SMALL})
        )
        self.config = make_config(http_origin("master", origin_port), **self.front_settings)
        app, _ = self.pool.worker_app(self.config)
        self.worker_requests = count_requests(app)
        self.worker_url = url(self.pool.start(app))
        front, self.state = self.pool.front_app(self.config, [self.worker_url])
        return front


class TestRelayedOriginals(RelayTestCase):
    def test_the_original_arrives_whole_with_its_etag(self) -> None:
        relayed = self.get("/huge/big.png")
        self.assertEqual(relayed.code, 200)
        self.assertEqual(relayed.body, BIG)
        self.assertEqual(int(relayed.headers["Content-Length"]), len(BIG))
        self.assertEqual(relayed.headers["Content-Type"], "image/png")
        self.assertRegex(relayed.headers["ETag"], STRONG_ETAG)
        # The worker's ETag, sent before the bytes, is the one the front
        # gives the same bytes from its cache.
        kept = self.get("/huge/big.png")
        self.assertEqual(len(self.worker_requests), 1)
        self.assertEqual(kept.headers["ETag"], relayed.headers["ETag"])
        self.assertNotEqual(self.get("/huge/small.png").headers["ETag"], kept.headers["ETag"])

    def test_one_small_enough_for_the_cache_is_kept(self) -> None:
        first = self.get("/huge/small.png")
        second = self.get("/huge/small.png")
        self.assertEqual((first.body, second.body), (SMALL, SMALL))
        self.assertEqual(second.headers["ETag"], first.headers["ETag"])
        self.assertEqual(len(self.worker_requests), 1)

    def test_matching_etag_is_304_when_kept(self) -> None:
        etag = self.get("/huge/small.png").headers["ETag"]
        response = self.get("/huge/small.png", headers={"If-None-Match": etag})
        self.assertEqual(response.code, 304)
        self.assertEqual(response.body, b"")
        self.assertEqual(len(self.worker_requests), 1)

    def test_head_has_the_length_and_no_body(self) -> None:
        response = self.get("/huge/big.png", method="HEAD")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.body, b"")
        self.assertEqual(int(response.headers["Content-Length"]), len(BIG))
        self.assertEqual(response.headers["ETag"], self.get("/huge/big.png").headers["ETag"])

    def test_worker_errors_keep_their_status(self) -> None:
        response = self.get("/huge/missing.png")
        self.assertEqual(response.code, 404)
        self.assertTrue(response.headers["Content-Type"].startswith("text/plain"))

    def test_crop_points_are_still_made_by_the_worker(self) -> None:
        response = self.get("/huge/0x0/100x100/big.png")
        self.assertEqual(response.code, 200)
        self.assertNotEqual(response.body, BIG)


class TestTooLargeToKeep(RelayTestCase):
    # The front keeps relayed images up to an eighth of its cache: 1 MiB here.
    front_settings = {"resized_cache_size": 8 * MIB}

    def test_every_request_is_relayed_again(self) -> None:
        etags = set()
        for _ in range(3):
            response = self.get("/huge/big.png")
            self.assertEqual(response.body, BIG)
            etags.add(response.headers["ETag"])
        self.assertEqual(len(etags), 1)  # the same bytes, the same ETag every time
        self.assertEqual(len(self.worker_requests), 3)
        self.assertEqual(self.state.results.memory.size, 0)

    def test_matching_etag_is_304_when_relayed(self) -> None:
        etag = self.get("/huge/big.png").headers["ETag"]
        response = self.get("/huge/big.png", headers={"If-None-Match": etag})
        self.assertEqual(response.code, 304)
        self.assertEqual(response.body, b"")
        self.assertEqual(len(self.worker_requests), 2)  # asked again: nothing was kept


async def _raw_get(port: int, path: str) -> tuple[IOStream, int]:
    """A client that sends a GET and reads only the head; its stream and Content-Length."""
    stream = await TCPClient().connect("127.0.0.1", port)
    await stream.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = await stream.read_until(b"\r\n\r\n", max_bytes=16384)
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            return stream, int(value)
    raise AssertionError(f"no Content-Length in {head!r}")


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


async def _read_to_end(stream: IOStream) -> int:
    received = 0
    try:
        while True:
            received += len(await stream.read_bytes(MIB, partial=True))
    except StreamClosedError:
        return received


class _Endless:
    """What a fake worker did: bytes it got out, and whether its client left."""

    def __init__(self) -> None:
        self.sent = 0
        self.gone = asyncio.Event()


class _EndlessOriginal(RequestHandler):
    """A fake worker sending a 256 MiB "original" a MiB at a time."""

    def initialize(self, seen: _Endless) -> None:
        self.seen = seen

    async def get(self, *_: str) -> None:
        self.set_header("Content-Type", "image/png")
        self.set_header("Content-Length", str(256 * MIB))
        chunk = b"\0" * MIB
        try:
            for _ in range(256):
                self.write(chunk)
                await self.flush()
                self.seen.sent += len(chunk)
        except StreamClosedError:
            self.seen.gone.set()


class _BrokenOff(RequestHandler):
    """A fake worker that dies a quarter into its answer."""

    async def get(self, *_: str) -> None:
        stream = self.request.connection.detach()  # type: ignore[attr-defined]
        head = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 1048576\r\n\r\n"
        await stream.write(head + b"\0" * (256 * 1024))
        stream.close()


class _Chunked(RequestHandler):
    """A fake worker whose answer has no length (chunked)."""

    async def get(self, *_: str) -> None:
        self.set_header("Content-Type", "image/png")
        self.write(b"\0" * 1000)
        await self.flush()
        self.finish(b"\0" * 1000)


class _Held(RequestHandler):
    """A fake worker that answers nothing until its test lets it; notes a closed connection."""

    def initialize(self, seen: _Endless, release: asyncio.Event) -> None:
        self.seen = seen
        self.release = release

    async def get(self, *_: str) -> None:
        await self.release.wait()
        self.finish(b"late")

    def on_connection_close(self) -> None:
        self.seen.gone.set()


class _Paced(RequestHandler):
    """A fake worker that sends its head and half its body, then the rest when let."""

    def initialize(self, release: asyncio.Event) -> None:
        self.release = release

    async def get(self, *_: str) -> None:
        self.set_header("Content-Type", "image/png")
        self.set_header("Content-Length", str(100_000))
        self.write(b"\0" * 50_000)
        await self.flush()
        await self.release.wait()
        self.finish(b"\0" * 50_000)


class TestFakeWorkers(PoolTestCase):
    def get_app(self) -> Application:
        self.pool = ServerPool(self.io_loop)
        return Application()

    def front_over(
        self, handler: type[RequestHandler], cache: int = 100 * MIB, **kwargs: object
    ) -> int:
        worker = self.pool.start(Application([(r"/.*", handler, kwargs)]))
        config = make_config(http_origin("master", 9), max_worker_queue=1, resized_cache_size=cache)
        front, self.state = self.pool.front_app(config, [url(worker)])
        return self.pool.start(front)

    @gen_test(timeout=20)
    async def test_a_client_that_stops_reading_holds_back_the_worker(self) -> None:
        seen = _Endless()
        port = self.front_over(_EndlessOriginal, seen=seen)
        relays: list[Relay] = []
        relay_for = self.state.relay

        async def recorded(request: ImageRequest, offers: tuple[str, ...], relay: Relay) -> Head:
            relays.append(relay)
            return await relay_for(request, offers, relay)

        self.state.relay = recorded  # type: ignore[method-assign]
        stream, length = await _raw_get(port, "/huge/x.png")
        self.assertEqual(length, 256 * MIB)
        # Nothing is read past the head: the front stops reading from the
        # worker, which has got out no more than the sockets hold.
        await _until(lambda: relays[0].paused)
        self.assertLess(seen.sent, 64 * MIB)
        stream.close()
        await asyncio.wait_for(seen.gone.wait(), 10)  # the front let go of the worker

    @gen_test(timeout=20)
    async def test_a_relay_leaves_the_worker_queue_once_the_head_is_in(self) -> None:
        seen = _Endless()
        port = self.front_over(_EndlessOriginal, seen=seen)
        slow, _ = await _raw_get(port, "/huge/x.png")
        try:
            # max_worker_queue is 1 and the first client takes nothing: the
            # second still gets its answer started, not 503.
            second, length = await _raw_get(port, "/huge/y.png")
            self.assertEqual(length, 256 * MIB)
            second.close()
        finally:
            slow.close()
        await asyncio.wait_for(seen.gone.wait(), 10)

    @gen_test(timeout=20)
    async def test_relays_gather_for_the_cache_within_one_budget(self) -> None:
        release = asyncio.Event()
        # An eighth of the cache, 150 kB, holds one 100 kB answer, not two.
        port = self.front_over(_Paced, cache=1_200_000, release=release)
        first, _ = await _raw_get(port, "/huge/a.png")
        second, _ = await _raw_get(port, "/huge/b.png")
        release.set()
        for stream in (first, second):
            self.assertEqual(len(await stream.read_bytes(100_000)), 100_000)
            stream.close()
        self.assertEqual(len(self.state.results.memory), 1)
        self.assertEqual(self.state.gathering.held, 0)

    def test_an_answer_without_a_length_is_502(self) -> None:
        port = self.front_over(_Chunked)
        response = self.get("/huge/x.png", base=url(port))
        self.assertEqual(response.code, 502)
        self.assertIn(b"without a length", response.body)

    @gen_test(timeout=20)
    async def test_a_client_gone_before_the_head_stops_the_worker_request_quietly(self) -> None:
        seen, release = _Endless(), asyncio.Event()
        port = self.front_over(_Held, seen=seen, release=release)
        stream = await TCPClient().connect("127.0.0.1", port)
        with self.assertNoLogs("phizer.front", "WARNING"):
            await stream.write(b"GET /huge/x.png HTTP/1.1\r\nHost: x\r\n\r\n")
            await _until(lambda: self.state.queued[0] == 1)  # the worker is asked
            stream.close()
            # The front drops its request to the worker rather than wait for it.
            await asyncio.wait_for(seen.gone.wait(), 10)
            await _until(lambda: self.state.queued[0] == 0)
        release.set()

    @gen_test(timeout=20)
    async def test_a_worker_that_breaks_off_cuts_the_answer_short(self) -> None:
        port = self.front_over(_BrokenOff)
        with self.assertLogs("phizer.front", "WARNING") as logs:
            stream, length = await _raw_get(port, "/huge/x.png")
            received = await _read_to_end(stream)
        self.assertEqual(length, MIB)
        self.assertLess(received, length)  # the client can tell: the connection closed early
        self.assertIn("cut short", "\n".join(logs.output))
        # The front goes on serving.
        again, _ = await _raw_get(port, "/huge/y.png")
        again.close()
