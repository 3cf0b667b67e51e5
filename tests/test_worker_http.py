"""A worker over HTTP, with a real origin server on another port of the same loop."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time

from PIL import Image
from tornado.httpclient import HTTPResponse
from tornado.testing import gen_test
from tornado.web import Application

from phizer import __version__
from phizer.config.loader import Config
from tests.http_support import (
    PoolTestCase,
    ServerPool,
    StubServer,
    directory_origin,
    http_origin,
    make_config,
    spy_on,
    url,
)
from tests.imagetools import decode, encode, photo, similar

SOURCE = photo(800, 600)
JPEG = encode(SOURCE, "JPEG", quality=90)
PNG = encode(photo(800, 600, "RGBA"), "PNG")
GIF = encode(SOURCE.convert("P"), "GIF")
WEBP = encode(SOURCE, "WEBP")

# size code -> expected output size for an 800x600 source (README, "URLs": the constraints)
EXPECTED_SIZES = {
    "s100": (100, 75),
    "m200": (200, 150),
    "sq100": (100, 100),
    "p100": (100, 200),
    "l200": (200, 100),
    "huge": (800, 600),  # at or above max_dimension: the original, unresized
}


class WorkerTestCase(PoolTestCase):
    def get_app(self) -> Application:
        self.pool = ServerPool(self.io_loop)
        self.origin, self.origin_port = self.pool.stub(
            StubServer(
                files={
                    "photo.jpg": JPEG,
                    "photo.png": PNG,
                    "photo.gif": GIF,
                    "photo.webp": WEBP,
                    "dir/sub/nested.jpg": JPEG,
                    "UPPER.JPG": JPEG,
                    "with space.jpg": JPEG,
                    "garbage.jpg": b"this is not an image at all" * 10,
                    "truncated.jpg": JPEG[: len(JPEG) // 2],
                    "empty.jpg": b"",
                }
            )
        )
        self.config = make_config(http_origin("master", self.origin_port))
        app, self.state = self.pool.worker_app(self.config)
        return app

    def start_worker(self, config: Config) -> str:
        """Another worker (other settings or origins) in the same loop; its base URL."""
        return url(self.pool.worker(config)[1])

    def assert_image(self, response: HTTPResponse, content_type: str, size: tuple[int, int]):
        self.assertEqual(response.code, 200, response.body[:200])
        self.assertEqual(response.headers["Content-Type"], content_type)
        self.assertEqual(int(response.headers["Content-Length"]), len(response.body))
        image = decode(response.body)
        self.assertEqual(image.size, size)
        return image

    def assert_error(self, response: HTTPResponse, status: int) -> None:
        self.assertEqual(response.code, status, response.body[:200])
        self.assertTrue(response.headers["Content-Type"].startswith("text/plain"))
        body = response.body.decode("utf-8")
        self.assertLess(len(body), 300)
        self.assertNotIn("Traceback", body)
        self.assertNotIn('File "', body)
        self.assertTrue(body.strip(), "error bodies say what went wrong")


class TestResize(WorkerTestCase):
    def test_every_constraint_gives_the_configured_size(self) -> None:
        for code, size in EXPECTED_SIZES.items():
            with self.subTest(code=code):
                response = self.get(f"/{code}/photo.jpg")
                image = self.assert_image(response, "image/jpeg", size)
                self.assertEqual(response.headers["Server"], f"phizer/{__version__}")
                self.assertEqual(image.mode, "RGB")

    def test_max_keeps_the_picture(self) -> None:
        image = self.assert_image(self.get("/m200/photo.jpg"), "image/jpeg", (200, 150))
        self.assertTrue(similar(image, SOURCE))

    def test_square_is_the_centre_square(self) -> None:
        image = self.assert_image(self.get("/sq100/photo.jpg"), "image/jpeg", (100, 100))
        self.assertTrue(similar(image, SOURCE.crop((100, 0, 700, 600))))

    def test_huge_size_returns_the_original_bytes(self) -> None:
        response = self.get("/huge/photo.jpg")
        self.assert_image(response, "image/jpeg", (800, 600))
        self.assertEqual(response.body, JPEG)

    def test_output_format_follows_the_original(self) -> None:
        for name, content_type, mode in (
            ("photo.png", "image/png", "RGBA"),
            ("photo.gif", "image/gif", "P"),
            ("photo.webp", "image/webp", "RGB"),
        ):
            with self.subTest(name=name):
                image = self.assert_image(self.get(f"/m200/{name}"), content_type, (200, 150))
                self.assertEqual(image.mode, mode)

    def test_png_keeps_transparency(self) -> None:
        image = self.assert_image(self.get("/m200/photo.png"), "image/png", (200, 150))
        alpha = image.getchannel("A")
        # the source's alpha is a vertical gradient, transparent at the top
        self.assertLess(alpha.getpixel((100, 0)), 40)
        self.assertGreater(alpha.getpixel((100, 149)), 215)

    def test_crop_then_resize(self) -> None:
        # keeps 40% of the width: 320x600, fitted into 1000x1000
        response = self.get("/c1000/200x0/600x1000/photo.jpg")
        image = self.assert_image(response, "image/jpeg", (533, 1000))
        self.assertTrue(similar(image, SOURCE.crop((160, 0, 480, 600))))

    def test_crop_points_may_be_zero(self) -> None:
        # the 2012 code ignored a crop with a 0 point: the top-left quarter here
        response = self.get("/m200/0x0/500x500/photo.jpg")
        image = self.assert_image(response, "image/jpeg", (200, 150))
        self.assertTrue(similar(image, SOURCE.crop((0, 0, 400, 300))))

    def test_crop_with_huge_size_keeps_the_source_scale(self) -> None:
        self.assert_image(self.get("/huge/0x0/500x500/photo.jpg"), "image/jpeg", (400, 300))

    def test_size_code_is_case_insensitive(self) -> None:
        self.assert_image(self.get("/M200/photo.jpg"), "image/jpeg", (200, 150))

    def test_nested_encoded_and_upper_case_paths(self) -> None:
        for path in ("dir/sub/nested.jpg", "UPPER.JPG", "with%20space.jpg"):
            with self.subTest(path=path):
                self.assert_image(self.get(f"/m200/{path}"), "image/jpeg", (200, 150))
        self.assertEqual(self.origin.counts["with space.jpg"], 1)

    def test_origin_is_asked_with_the_phizer_user_agent(self) -> None:
        self.assert_image(self.get("/m200/photo.jpg"), "image/jpeg", (200, 150))
        self.assertEqual(self.origin.user_agents, [f"phizer/{__version__}"])

    def test_head_gives_the_headers_without_a_body(self) -> None:
        get = self.get("/m200/photo.jpg")
        head = self.get("/m200/photo.jpg", method="HEAD")
        self.assertEqual(head.code, 200)
        self.assertEqual(head.body, b"")
        self.assertEqual(head.headers["Content-Type"], "image/jpeg")
        self.assertEqual(int(head.headers["Content-Length"]), len(get.body))

    def test_origin_gets_the_path_below_its_root_percent_encoded(self) -> None:
        self.origin.files["images/caf\u00e9 1.jpg"] = JPEG
        base = self.start_worker(make_config(http_origin("master", self.origin_port, "/images/")))
        response = self.get("/m200/caf%C3%A9%201.jpg", base)
        self.assert_image(response, "image/jpeg", (200, 150))
        self.assertEqual(self.origin.uris, ["/images/caf%C3%A9%201.jpg"])

    def test_query_string_is_ignored(self) -> None:
        self.assert_image(self.get("/m200/photo.jpg?w=5&x=../y"), "image/jpeg", (200, 150))
        self.assertEqual(self.origin.uris, ["/photo.jpg"])


class TestErrors(WorkerTestCase):
    def test_unknown_size_is_404_without_asking_the_origin(self) -> None:
        self.assert_error(self.get("/nosuch/photo.jpg"), 404)
        self.assert_error(self.get("/s-100/photo.jpg"), 404)
        self.assertEqual(self.origin.total, 0)

    def test_missing_image_is_404(self) -> None:
        self.assert_error(self.get("/s100/missing.jpg"), 404)

    def test_malformed_urls_are_400(self) -> None:
        for path in (
            "/s100/../photo.jpg",
            "/s100/dir/../photo.jpg",
            "/s100/./photo.jpg",
            "/s100/%2e%2e/photo.jpg",
            "/s100/dir//photo.jpg",
            "/s100/photo.jpg/",
            "/s100/dir%2fphoto.jpg",
            "/s100/photo%00.jpg",
            "/s100/photo%0a.jpg",
            "/s100/dir%5cphoto.jpg",
            "/s100/dir\\photo.jpg",
            "/s100/%ff%fe.jpg",
            "/s100/%252e%252e/photo.jpg",
            "/s100/0x0/1001x1000/photo.jpg",
            "/s100/500x0/500x1000/photo.jpg",
            "/s100/600x600/500x700/photo.jpg",
            "/s100/-1x0/500x500/photo.jpg",
            "/s100/0x0/99999x500/photo.jpg",
        ):
            with self.subTest(path=path):
                self.assert_error(self.get(path), 400)
        self.assertEqual(self.origin.total, 0)

    def test_origin_500_is_502(self) -> None:
        self.origin.statuses["broken.jpg"] = 500
        self.assert_error(self.get("/s100/broken.jpg"), 502)

    def test_origin_403_and_410_are_404(self) -> None:
        self.origin.statuses["forbidden.jpg"] = 403
        self.origin.statuses["gone.jpg"] = 410
        self.assert_error(self.get("/s100/forbidden.jpg"), 404)
        self.assert_error(self.get("/s100/gone.jpg"), 404)

    def test_slow_origin_is_504(self) -> None:
        base = self.start_worker(
            make_config(http_origin("master", self.origin_port), origin_timeout=0.5)
        )
        self.origin.delays["photo.jpg"] = 30
        started = time.monotonic()
        self.assert_error(self.get("/s100/photo.jpg", base), 504)
        self.assertLess(time.monotonic() - started, 5)

    def test_undecodable_images_are_502(self) -> None:
        for name in ("garbage.jpg", "truncated.jpg", "empty.jpg"):
            with self.subTest(name=name):
                self.assert_error(self.get(f"/s100/{name}"), 502)

    def test_decompression_bomb_is_413(self) -> None:
        # 144 Mpx of 1-bit pixels: a few KB as PNG, refused before decoding
        self.origin.files["bomb.png"] = encode(Image.new("1", (12000, 12000)), "PNG")
        self.assert_error(self.get("/s100/bomb.png"), 413)

    def test_overlong_uri_is_refused(self) -> None:
        self.assert_error(self.get("/s100/" + "a" * 3000 + ".jpg"), 414)
        self.assertEqual(self.origin.total, 0)

    def test_other_methods_are_405_with_allow(self) -> None:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            with self.subTest(method=method):
                body = b"x" if method in ("POST", "PUT", "PATCH") else None
                response = self.get("/s100/photo.jpg", method=method, body=body)
                self.assert_error(response, 405)
                allowed = {m.strip() for m in response.headers["Allow"].split(",")}
                self.assertEqual(allowed, {"GET", "HEAD"})
        self.assertEqual(self.origin.total, 0)

    def test_head_of_an_error_has_no_body(self) -> None:
        response = self.get("/s100/missing.jpg", method="HEAD")
        self.assertEqual(response.code, 404)
        self.assertEqual(response.body, b"")


class TestOriginalsCache(WorkerTestCase):
    def test_other_sizes_of_one_original_reuse_it(self) -> None:
        for code in ("s100", "m200", "sq100", "p100", "l200"):
            self.assertEqual(self.get(f"/{code}/photo.jpg").code, 200)
        self.assertEqual(self.get("/m200/100x100/900x900/photo.jpg").code, 200)
        self.assertEqual(self.origin.counts["photo.jpg"], 1)
        self.assertEqual(self.origin.total, 1)

    def test_failures_are_not_cached(self) -> None:
        self.origin.statuses["flaky.jpg"] = 500
        self.assertEqual(self.get("/s100/flaky.jpg").code, 502)
        del self.origin.statuses["flaky.jpg"]
        self.origin.files["flaky.jpg"] = JPEG
        self.assertEqual(self.get("/s100/flaky.jpg").code, 200)
        self.assertEqual(self.origin.counts["flaky.jpg"], 2)

    def test_disable_cache_asks_the_origin_every_time(self) -> None:
        base = self.start_worker(
            make_config(http_origin("master", self.origin_port), disable_cache=True)
        )
        for code in ("s100", "s100", "m200"):
            self.assertEqual(self.get(f"/{code}/photo.jpg", base).code, 200)
        self.assertEqual(self.origin.counts["photo.jpg"], 3)

    def test_original_bigger_than_the_cache_is_fetched_each_time(self) -> None:
        base = self.start_worker(
            make_config(
                http_origin("master", self.origin_port),
                client_cache_size=1000,
                decoded_cache_size=0,  # else the second request needs no original
            )
        )
        for _ in range(2):
            self.assertEqual(self.get("/s100/photo.jpg", base).code, 200)
        self.assertEqual(self.origin.counts["photo.jpg"], 2)

    async def concurrently(self, paths: list[str]) -> list[HTTPResponse]:
        """Send every request, hold the origin until all of them wait on the
        original inside the worker, then let it answer."""
        wanted = spy_on(self.state, "original")
        requests = [asyncio.ensure_future(self.aget(path)) for path in paths]
        await wanted.wait_for(len(paths))
        await self.origin.wait_for_requests(1)
        self.origin.release()
        return await asyncio.gather(*requests)

    @gen_test(timeout=20)
    async def test_concurrent_requests_share_one_origin_fetch(self) -> None:
        self.origin.delays["photo.jpg"] = 10
        codes = ("s100", "s100", "m200", "sq100", "l200", "p100")
        responses = await self.concurrently([f"/{code}/photo.jpg" for code in codes])
        self.assertEqual([r.code for r in responses], [200] * 6)
        self.assertEqual(self.origin.counts["photo.jpg"], 1)

    @gen_test(timeout=20)
    async def test_concurrent_failures_are_shared_too(self) -> None:
        self.origin.statuses["bad.jpg"] = 500
        self.origin.delays["bad.jpg"] = 10
        responses = await self.concurrently(["/s100/bad.jpg"] * 5)
        self.assertEqual([r.code for r in responses], [502] * 5)
        self.assertEqual(self.origin.counts["bad.jpg"], 1)


class TestSlaves(WorkerTestCase):
    def with_slaves(self, master_port: int, *slave_ports: int) -> str:
        slaves = tuple(http_origin(f"slave-{i}", p) for i, p in enumerate(slave_ports, 1))
        return self.start_worker(make_config(http_origin("master", master_port), slaves))

    def test_slave_serves_what_the_master_lacks(self) -> None:
        slave, slave_port = self.pool.stub(StubServer(files={"only-slave.jpg": JPEG}))
        base = self.with_slaves(self.origin_port, slave_port)
        self.assert_image(self.get("/m200/only-slave.jpg", base), "image/jpeg", (200, 150))
        self.assertEqual(self.origin.counts["only-slave.jpg"], 1)
        self.assertEqual(slave.counts["only-slave.jpg"], 1)

    def test_slaves_are_not_asked_when_the_master_has_it(self) -> None:
        slave, slave_port = self.pool.stub(StubServer(files={"photo.jpg": JPEG}))
        base = self.with_slaves(self.origin_port, slave_port)
        self.assertEqual(self.get("/m200/photo.jpg", base).code, 200)
        self.assertEqual(slave.total, 0)

    def test_master_down_and_slave_has_it(self) -> None:
        _, dead_port = self.pool.reserve_port()
        slave, slave_port = self.pool.stub(StubServer(files={"photo.jpg": JPEG}))
        base = self.with_slaves(dead_port, slave_port)
        self.assert_image(self.get("/m200/photo.jpg", base), "image/jpeg", (200, 150))
        self.assertEqual(slave.counts["photo.jpg"], 1)

    @gen_test(timeout=20)
    async def test_slaves_are_asked_in_parallel(self) -> None:
        slow, slow_port = self.pool.stub(StubServer(files={"x.jpg": JPEG}, delays={"*": 10}))
        fast, fast_port = self.pool.stub(StubServer(files={"x.jpg": JPEG}))
        base = self.with_slaves(self.origin_port, slow_port, fast_port)
        started = time.monotonic()
        response = await self.aget("/m200/x.jpg", base)
        self.assertEqual(response.code, 200)
        self.assertLess(time.monotonic() - started, 5)
        self.assertEqual((slow.total, fast.total), (1, 1))

    @gen_test(timeout=20)
    async def test_a_failing_slave_does_not_hide_one_that_has_it(self) -> None:
        failing, failing_port = self.pool.stub(StubServer(statuses={"*": 500}))
        slow, slow_port = self.pool.stub(StubServer(files={"x.jpg": JPEG}, delays={"*": 10}))
        base = self.with_slaves(self.origin_port, failing_port, slow_port)
        request = asyncio.ensure_future(self.aget("/m200/x.jpg", base))
        await failing.wait_for_requests(1)
        await slow.wait_for_requests(1)
        slow.release()
        response = await request
        self.assertEqual(response.code, 200)
        self.assertEqual(decode(response.body).size, (200, 150))

    def test_not_found_anywhere_is_404(self) -> None:
        _, slave_port = self.pool.stub(StubServer())
        _, other_port = self.pool.stub(StubServer())
        base = self.with_slaves(self.origin_port, slave_port, other_port)
        self.assert_error(self.get("/s100/nowhere.jpg", base), 404)

    def test_an_origin_error_is_not_reported_as_404(self) -> None:
        _, broken_port = self.pool.stub(StubServer(statuses={"*": 500}))
        base = self.with_slaves(self.origin_port, broken_port)
        self.assert_error(self.get("/s100/nowhere.jpg", base), 502)


class TestDirectoryOrigin(WorkerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.root = os.path.join(self.tmp.name, "root")
        os.makedirs(os.path.join(self.root, "sub"))
        outside = os.path.join(self.tmp.name, "secret.jpg")
        for path in (outside, os.path.join(self.root, "sub", "inside.jpg")):
            with open(path, "wb") as handle:
                handle.write(JPEG)
        os.symlink(outside, os.path.join(self.root, "escape.jpg"))
        os.symlink(self.tmp.name, os.path.join(self.root, "up"))
        os.symlink(os.path.join("sub", "inside.jpg"), os.path.join(self.root, "alias.jpg"))
        self.base = self.start_worker(make_config(directory_origin("master", self.root)))

    def test_files_below_the_root_are_served(self) -> None:
        for path in ("sub/inside.jpg", "alias.jpg"):
            with self.subTest(path=path):
                self.assert_image(self.get(f"/m200/{path}", self.base), "image/jpeg", (200, 150))

    def test_symlinks_leaving_the_root_are_404(self) -> None:
        for path in ("escape.jpg", "up/secret.jpg"):
            with self.subTest(path=path):
                self.assert_error(self.get(f"/m200/{path}", self.base), 404)

    def test_directories_and_missing_files_are_404(self) -> None:
        for path in ("sub", "nothing.jpg", "sub/inside.jpg/x.jpg"):
            with self.subTest(path=path):
                self.assert_error(self.get(f"/m200/{path}", self.base), 404)
