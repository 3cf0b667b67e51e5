"""Source limits: bytes refused while streaming, pixels refused from the header."""

from __future__ import annotations

import asyncio
import os
import struct
import tempfile
import zlib

import pytest
from PIL import Image
from tornado.testing import gen_test
from tornado.web import Application, RequestHandler

from phizer.errors import BadImage, SourceTooLarge, UnsupportedImage, WorkerUnavailable
from phizer.imaging.decode import open_image, set_pixel_limit, unsupported_format
from phizer.origins.base import FetchLimits, InFlightBytes
from phizer.origins.directory import DirectoryOrigin
from phizer.origins.transfer import BoundedSink, get
from tests.hostile_corpus import cur, psd, svg_after_comment
from tests.http_support import (
    PoolTestCase,
    ServerPool,
    StubServer,
    directory_origin,
    http_origin,
    make_config,
    url,
)
from tests.imagetools import encode, photo

LIMIT = 64 * 1024
SMALL_JPEG = encode(photo(120, 90), "JPEG")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height`` with almost no data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def gif_with_huge_frame(screen: int, frame: int) -> bytes:
    """A GIF whose logical screen is small but whose first frame is not."""
    header = b"GIF89a" + struct.pack("<HHBBB", screen, screen, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    descriptor = b"\x2c" + struct.pack("<HHHHB", 0, 0, frame, frame, 0)
    return header + descriptor + b"\x02\x02\x4c\x01\x00\x3b"


# --- pixels -------------------------------------------------------------------


def test_pixels_within_the_limit_open() -> None:
    image = open_image(png_header_only(100, 100), max_pixels=10_000)
    assert image.size == (100, 100)


@pytest.mark.parametrize(
    "data",
    [
        png_header_only(101, 100),
        png_header_only(50_000, 50_000),
        gif_with_huge_frame(10, 20_000),
        encode(photo(200, 100), "JPEG"),
    ],
    ids=["png-just-over", "png-bomb", "gif-frame-beyond-screen", "jpeg"],
)
def test_too_many_pixels_is_refused_before_decoding(data: bytes) -> None:
    with pytest.raises(SourceTooLarge):
        open_image(data, max_pixels=10_000)


def test_limit_above_pillows_default_is_honoured() -> None:
    # Pillow alone refuses above ~89 MP; an operator may allow more (a worker
    # sets Pillow's own fence to its limit when it starts).
    saved = Image.MAX_IMAGE_PIXELS
    set_pixel_limit(100_000_000)
    try:
        image = open_image(png_header_only(10_000, 10_000), max_pixels=100_000_000)
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    assert image.size == (10_000, 10_000)


SMALL = photo(40, 30)


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (encode(SMALL, "EPS"), "EPS"),
        (encode(SMALL, "PDF"), "PDF"),
        (psd(), "PSD"),
        (encode(SMALL, "ICO"), "ICO"),
        (cur(), "CUR"),
        (encode(SMALL, "PCX"), "PCX"),
        (encode(SMALL, "TGA"), "TGA"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
        (svg_after_comment(4000), "SVG"),
        (b"\xef\xbb\xbf<!DOCTYPE svg [ <!ENTITY a 'b'> ]>\n<svg:svg/>", "SVG"),
        (b"\x00\x00\x00\x18ftypheic" + b"\0" * 40, "HEIF"),
    ],
    ids=[
        "eps",
        "pdf",
        "psd",
        "ico",
        "cur",
        "pcx",
        "tga",
        "svg",
        "svg-after-comment",
        "svg-doctype",
        "heif",
    ],
)
def test_images_the_allow_list_refuses_are_named(data: bytes, name: str) -> None:
    assert unsupported_format(data) == name
    with pytest.raises(UnsupportedImage, match=name):
        open_image(data)


@pytest.mark.parametrize(
    "data",
    [
        b"just some text that is no image",
        b"<!DOCTYPE html>\n<html><body><svg/></body></html>",
        b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8,  # JPEG magic, then nothing valid
        b"8BPS\x00\x01" + bytes(40),  # a PSD signature on a header no reader accepts
    ],
    ids=["text", "html-with-svg", "jpeg-magic", "psd-signature-only"],
)
def test_garbage_is_a_bad_image_not_an_unsupported_one(data: bytes) -> None:
    assert unsupported_format(data) is None
    with pytest.raises(BadImage):
        open_image(data)


# --- bytes --------------------------------------------------------------------


def test_sink_keeps_up_to_the_limit_and_aborts_past_it() -> None:
    sink = BoundedSink(10)
    assert sink.write(b"12345") == 5
    assert sink.write(b"67890") == 5
    assert sink.data() == b"1234567890" and not sink.overflowed
    assert sink.write(b"!") == 0
    assert sink.overflowed


def test_directory_origin_refuses_a_large_file() -> None:
    with tempfile.TemporaryDirectory() as root:
        with open(os.path.join(root, "big.jpg"), "wb") as handle:
            handle.write(b"\xff" * (LIMIT + 1))
        with open(os.path.join(root, "ok.jpg"), "wb") as handle:
            handle.write(SMALL_JPEG)
        origin = DirectoryOrigin(directory_origin("master", root), max_bytes=LIMIT)
        assert asyncio.run(origin.fetch("ok.jpg")).data == SMALL_JPEG
        with pytest.raises(SourceTooLarge):
            asyncio.run(origin.fetch("big.jpg"))


class _Chunked(RequestHandler):
    """Streams ``total`` bytes in chunks without a Content-Length."""

    async def get(self, total: str) -> None:
        sent = 0
        while sent < int(total):
            self.write(b"\0" * 8192)
            await self.flush()
            sent += 8192


class TestHttpOriginLimit(PoolTestCase):
    def get_app(self) -> Application:
        self.saved_pixel_limit = Image.MAX_IMAGE_PIXELS  # a worker sets it for its process
        self.pool = ServerPool(self.io_loop)
        self.origin, origin_port = self.pool.stub(
            StubServer(files={"big.jpg": b"\xff" * (LIMIT * 4), "small.jpg": SMALL_JPEG})
        )
        self.chunked_port = self.pool.start(Application([(r"/chunked/(\d+)\.jpg", _Chunked)]))
        config = make_config(
            http_origin("master", origin_port), max_source_bytes=LIMIT, max_source_pixels=10**6
        )
        self.chunked_worker = self.pool.worker(
            make_config(http_origin("master", self.chunked_port), max_source_bytes=LIMIT)
        )[1]
        app, self.state = self.pool.worker_app(config)
        return app

    def tearDown(self) -> None:
        super().tearDown()
        set_pixel_limit(self.saved_pixel_limit)

    def test_content_length_over_the_limit_is_413(self) -> None:
        self.assertEqual(self.get("/s100/big.jpg").code, 413)
        self.assertEqual(self.get("/s100/small.jpg").code, 200)

    def test_streamed_body_over_the_limit_is_413(self) -> None:
        base = f"http://127.0.0.1:{self.chunked_worker}"
        # Far larger than the limit: refused once the limit is passed.
        self.assertEqual(self.get(f"/s100/chunked/{LIMIT * 100}.jpg", base=base).code, 413)


def test_originals_in_flight_share_one_budget() -> None:
    budget = InFlightBytes(100)
    first, second = BoundedSink(1000, budget), BoundedSink(1000, budget)
    assert first.write(b"x" * 60) == 60
    assert second.write(b"y" * 50) == 0 and second.over_budget  # 110 > 100: stopped
    assert second.write(b"y" * 40) == 40  # what fits still does
    first.release()
    second.release()
    assert budget.held == 0
    assert BoundedSink(1000, budget).write(b"z" * 100) == 100


class TestInFlightBudget(PoolTestCase):
    def get_app(self) -> Application:
        self.pool = ServerPool(self.io_loop)
        _origin, self.origin_port = self.pool.stub(StubServer(files={"photo.jpg": SMALL_JPEG}))
        return Application()

    @gen_test
    async def test_a_fetch_past_the_budget_stops_with_503(self) -> None:
        budget = InFlightBytes(len(SMALL_JPEG) // 2)  # less than this one original
        limits = FetchLimits(2.0, 5.0, LIMIT, budget)
        with self.assertRaises(WorkerUnavailable) as caught:
            await get(self.pool.client(), url(self.origin_port) + "/photo.jpg", "master", limits)
        self.assertEqual(caught.exception.status, 503)
        self.assertEqual(budget.held, 0)  # nothing is left counted
        roomy = FetchLimits(2.0, 5.0, LIMIT, InFlightBytes(LIMIT))
        answer = await get(self.pool.client(), url(self.origin_port) + "/photo.jpg", "m", roomy)
        self.assertEqual(answer.body, SMALL_JPEG)


def test_an_original_in_use_counts_once_until_its_last_request_lets_go() -> None:
    budget = InFlightBytes(100)
    assert budget.hold("a.jpg", 60) and budget.hold("a.jpg", 60)  # two requests, one original
    assert budget.held == 60
    assert not budget.hold("b.jpg", 50)  # 110 > 100: refused, nothing counted
    assert budget.held == 60
    budget.let_go("a.jpg")
    assert budget.held == 60  # still in use by the other request
    budget.let_go("a.jpg")
    assert budget.held == 0
    assert budget.hold("b.jpg", 50)


OTHER_JPEG = encode(photo(160, 120), "JPEG")


class TestOriginalsInUse(PoolTestCase):
    """Originals held by requests count against max_inflight_bytes too."""

    def get_app(self) -> Application:
        self.pool = ServerPool(self.io_loop)
        _origin, port = self.pool.stub(StubServer(files={"a.jpg": SMALL_JPEG, "b.jpg": OTHER_JPEG}))
        budget = len(SMALL_JPEG) + len(OTHER_JPEG) - 1  # not both at once
        config = make_config(
            http_origin("master", port), max_source_bytes=budget, max_inflight_bytes=budget
        )
        app, self.state = self.pool.worker_app(config)
        return app

    @gen_test
    async def test_a_request_past_the_budget_is_503_until_the_other_lets_go(self) -> None:
        original, _ = await self.state.original("a.jpg")
        with self.state.holding("a.jpg", original):  # as a request rendering it would
            refused = await self.aget("/s100/b.jpg")
            self.assertEqual(refused.code, 503)
            self.assertEqual(refused.headers["Retry-After"], "1")
            # Another size of the original in use does not count it twice.
            self.assertEqual((await self.aget("/m200/a.jpg")).code, 200)
        self.assertEqual((await self.aget("/s100/b.jpg")).code, 200)
        self.assertEqual(self.state.origins.in_flight.held, 0)
