"""The front over HTTP: real workers (or recording fake ones) on other ports of the loop."""

from __future__ import annotations

import asyncio
import copy
import email.utils
import time
import zlib
from typing import Any
from urllib.parse import unquote

from tornado.httpclient import HTTPResponse
from tornado.testing import gen_test
from tornado.web import Application

from phizer import __version__
from phizer.config.loader import Config
from phizer.web.front import FrontState
from tests.http_support import (
    PoolTestCase,
    ServerPool,
    StubServer,
    count_requests,
    http_origin,
    make_config,
    spy_on,
    url,
)
from tests.imagetools import decode, encode, photo

JPEG = encode(photo(800, 600), "JPEG", quality=90)
PNG = encode(photo(640, 480, "RGBA"), "PNG")
# what a fake worker answers: an already "resized" picture
THUMB = encode(photo(200, 150), "JPEG", quality=90)
TINY_GIF = encode(photo(1, 1).convert("P"), "GIF")


class FrontTestCase(PoolTestCase):
    """The test's own server is a front over two real workers and one origin."""

    def get_app(self) -> Application:
        self.pool = ServerPool(self.io_loop)
        self.origin, origin_port = self.pool.stub(
            StubServer(files={"photo.jpg": JPEG, "photo.png": PNG, "dir/other.jpg": JPEG})
        )
        self.worker_config = make_config(http_origin("master", origin_port), num_workers=2)
        self.worker_requests: list[list[tuple[str, str, int]]] = []
        self.worker_urls: list[str] = []
        for _ in range(2):
            app, _state = self.pool.worker_app(self.worker_config)
            self.worker_requests.append(count_requests(app))
            self.worker_urls.append(url(self.pool.start(app)))
        app, self.state = self.pool.front_app(self.worker_config, self.worker_urls)
        return app

    @property
    def worker_total(self) -> int:
        return sum(len(requests) for requests in self.worker_requests)

    def start_front(self, config: Config, worker_urls: list[str]) -> tuple[FrontState, str]:
        """Another front in the same loop; its state and base URL."""
        app, state = self.pool.front_app(config, worker_urls)
        return state, url(self.pool.start(app))

    def fake_workers(self, count: int, **behaviour: Any) -> list[StubServer]:
        """Recording fake workers that answer THUMB for any path (each gets
        its own copy of ``behaviour``)."""
        behaviour.setdefault("default", THUMB)
        return [self.pool.stub(StubServer(**copy.deepcopy(behaviour)))[0] for _ in range(count)]

    def front_over(self, workers: list[StubServer], **settings: object) -> str:
        ports = [worker.port for worker in workers]
        config = make_config(http_origin("master", 9), num_workers=len(ports), **settings)
        return self.start_front(config, [url(port) for port in ports])[1]

    def assert_error(self, response: HTTPResponse, status: int) -> str:
        self.assertEqual(response.code, status, response.body[:200])
        self.assertTrue(response.headers["Content-Type"].startswith("text/plain"))
        self.assertEqual(response.headers["Server"], f"phizer/{__version__}")
        body = response.body.decode("utf-8")
        self.assertLess(len(body), 300)
        self.assertNotIn("Traceback", body)
        return body


class TestResponses(FrontTestCase):
    def test_image_and_headers(self) -> None:
        response = self.get("/m200/photo.jpg")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers["Server"], f"phizer/{__version__}")
        self.assertEqual(response.headers["Content-Type"], "image/jpeg")
        self.assertEqual(int(response.headers["Content-Length"]), len(response.body))
        self.assertRegex(response.headers["ETag"], r'^"[!#-~]+"$')  # strong and quoted
        self.assertNotIn("Cache-Control", response.headers)
        self.assertNotIn("Expires", response.headers)
        self.assertEqual(decode(response.body).size, (200, 150))

    def test_png_through_the_front(self) -> None:
        response = self.get("/sq100/photo.png")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers["Content-Type"], "image/png")
        image = decode(response.body)
        self.assertEqual((image.size, image.mode), ((100, 100), "RGBA"))

    def test_max_age_gives_cache_control_and_expires(self) -> None:
        config = make_config(self.worker_config.master, max_age=3600, num_workers=2)
        _, base = self.start_front(config, self.worker_urls)
        response = self.get("/m200/photo.jpg", base)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers["Cache-Control"], "max-age=3600")
        expires = email.utils.parsedate_to_datetime(response.headers["Expires"])
        self.assertAlmostEqual(expires.timestamp(), time.time() + 3600, delta=60)
        self.assertTrue(response.headers["Expires"].endswith("GMT"))

    def test_head_has_headers_and_no_body(self) -> None:
        get = self.get("/m200/photo.jpg")
        head = self.get("/m200/photo.jpg", method="HEAD")
        self.assertEqual(head.code, 200)
        self.assertEqual(head.body, b"")
        self.assertEqual(int(head.headers["Content-Length"]), len(get.body))
        self.assertEqual(head.headers["ETag"], get.headers["ETag"])

    def test_other_methods_are_405(self) -> None:
        for method in ("POST", "PUT", "DELETE"):
            with self.subTest(method=method):
                body = b"x" if method != "DELETE" else None
                response = self.get("/m200/photo.jpg", method=method, body=body)
                self.assert_error(response, 405)
                self.assertIn("GET", response.headers["Allow"])
        self.assertEqual(self.worker_total, 0)


class TestConditionalRequests(FrontTestCase):
    def etag(self) -> str:
        response = self.get("/m200/photo.jpg")
        self.assertEqual(response.code, 200)
        return response.headers["ETag"]

    def test_matching_etag_is_304_without_body(self) -> None:
        etag = self.etag()
        for header in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
            with self.subTest(header=header):
                response = self.get("/m200/photo.jpg", headers={"If-None-Match": header})
                self.assertEqual(response.code, 304)
                self.assertEqual(response.body, b"")
                self.assertEqual(response.headers["ETag"], etag)

    def test_other_etag_gets_the_image(self) -> None:
        etag = self.etag()
        response = self.get("/m200/photo.jpg", headers={"If-None-Match": '"something-else"'})
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers["ETag"], etag)
        self.assertEqual(decode(response.body).size, (200, 150))

    def test_etag_differs_between_sizes(self) -> None:
        etag = self.etag()
        other = self.get("/s100/photo.jpg").headers["ETag"]
        self.assertNotEqual(etag, other)
        response = self.get("/s100/photo.jpg", headers={"If-None-Match": etag})
        self.assertEqual(response.code, 200)


class TestResultCache(FrontTestCase):
    def test_second_request_is_a_hit(self) -> None:
        first = self.get("/m200/photo.jpg")
        self.assertEqual((self.worker_total, self.origin.total), (1, 1))
        second = self.get("/m200/photo.jpg")
        self.assertEqual(second.code, 200)
        self.assertEqual(second.body, first.body)
        self.assertEqual(second.headers["ETag"], first.headers["ETag"])
        self.assertEqual((self.worker_total, self.origin.total), (1, 1))

    def test_other_size_goes_to_the_worker_but_not_the_origin(self) -> None:
        self.get("/m200/photo.jpg")
        self.assertEqual(self.get("/s100/photo.jpg").code, 200)
        self.assertEqual((self.worker_total, self.origin.total), (2, 1))

    def test_query_string_is_not_part_of_the_key(self) -> None:
        self.assertEqual(self.get("/m200/photo.jpg?a=1").code, 200)
        self.assertEqual(self.get("/m200/photo.jpg?b=2&c=../x").code, 200)
        self.assertEqual(self.get("/M200/photo.jpg").code, 200)
        self.assertEqual(self.worker_total, 1)
        [(_, uri, _)] = [r for requests in self.worker_requests for r in requests]
        self.assertEqual(uri, "/m200/photo.jpg")

    @gen_test(timeout=20)
    async def test_concurrent_identical_misses_make_one_worker_request(self) -> None:
        self.origin.delays["photo.jpg"] = 10
        arrived = spy_on(self.state, "finished")
        requests = [asyncio.ensure_future(self.aget("/m200/photo.jpg")) for _ in range(6)]
        await arrived.wait_for(6)
        await self.origin.wait_for_requests(1)
        self.origin.release()
        responses = await asyncio.gather(*requests)
        self.assertEqual([r.code for r in responses], [200] * 6)
        self.assertEqual(len({r.headers["ETag"] for r in responses}), 1)
        self.assertEqual((self.worker_total, self.origin.total), (1, 1))


class TestErrors(FrontTestCase):
    def test_unknown_size_is_404_without_a_worker(self) -> None:
        for path in ("/nosuch/photo.jpg", "/s-1/photo.jpg", "/photo.jpg", "/"):
            with self.subTest(path=path):
                self.assert_error(self.get(path), 404)
        self.assertEqual(self.worker_total, 0)

    def test_service_paths_are_404(self) -> None:
        for path in ("/_healthz", "/_/x", "/_metrics/photo.jpg", "/_s100/photo.jpg"):
            with self.subTest(path=path):
                self.assert_error(self.get(path), 404)
        self.assertEqual(self.worker_total, 0)

    def test_malformed_urls_are_400_without_a_worker(self) -> None:
        for path in ("/m200/../photo.jpg", "/m200/a//b.jpg", "/m200/0x0/0x1000/photo.jpg"):
            with self.subTest(path=path):
                self.assert_error(self.get(path), 400)
        self.assertEqual(self.worker_total, 0)

    def test_worker_statuses_from_real_workers(self) -> None:
        self.origin.statuses["broken.jpg"] = 500
        self.assert_error(self.get("/m200/missing.jpg"), 404)
        self.assert_error(self.get("/m200/broken.jpg"), 502)


class TestFakeWorkers(FrontTestCase):
    def test_routing_follows_crc32_of_the_file_name(self) -> None:
        workers = self.fake_workers(2)
        base = self.front_over(workers)
        paths = [f"img{i}.jpg" for i in range(12)] + ["dir/sub/deep.png", "a%20b.jpg"]
        for path in paths:
            with self.subTest(path=path):
                self.assertEqual(self.get(f"/s100/{path}", base).code, 200)
                filename = unquote(path.rsplit("/", 1)[-1])
                index = zlib.crc32(filename.encode()) % 2
                key = "s100/" + unquote(path)
                self.assertEqual(workers[index].counts[key], 1)
                self.assertEqual(workers[1 - index].counts[key], 0)
        self.assertTrue(workers[0].total and workers[1].total, "both workers were used")

    def test_every_size_of_one_file_goes_to_the_same_worker(self) -> None:
        workers = self.fake_workers(2)
        base = self.front_over(workers)
        for name in ("alpha.jpg", "beta.jpg", "gamma.jpg"):
            index = zlib.crc32(name.encode()) % 2
            before = (workers[index].total, workers[1 - index].total)
            for path in ("s100", "m200", "sq100", "p100", "l200", "s100/0x0/500x500"):
                self.assertEqual(self.get(f"/{path}/{name}", base).code, 200)
                self.assertEqual(self.get(f"/{path}/nested/dir/{name}", base).code, 200)
            self.assertEqual(workers[index].total, before[0] + 12)
            self.assertEqual(workers[1 - index].total, before[1])

    def test_worker_receives_the_canonical_key(self) -> None:
        [worker] = self.fake_workers(1)
        base = self.front_over([worker])
        self.assertEqual(self.get("/S100/0x0/500x500/a%20b.jpg?x=1", base).code, 200)
        self.assertEqual(worker.uris, ["/s100/0x0/500x500/a%20b.jpg"])

    def test_worker_error_statuses_are_passed_through(self) -> None:
        statuses = {400: "bad", 404: "missing", 413: "huge", 422: "odd", 502: "broken"}
        # A status without a meaning of its own (a worker's bug) stays what it was.
        statuses |= {500: "bug", 503: "busy", 504: "slow", 507: "odd5xx", 418: "teapot"}
        [worker] = self.fake_workers(
            1, statuses={f"s100/{name}.jpg": code for code, name in statuses.items()}
        )
        base = self.front_over([worker])
        for code, name in statuses.items():
            with self.subTest(code=code):
                body = self.assert_error(self.get(f"/s100/{name}.jpg", base), code)
                self.assertEqual(body.strip(), f"stub says {code} for s100/{name}.jpg")

    def test_errors_are_not_cached(self) -> None:
        [worker] = self.fake_workers(1, statuses={"s100/later.jpg": 404})
        base = self.front_over([worker])
        self.assert_error(self.get("/s100/later.jpg", base), 404)
        del worker.statuses["s100/later.jpg"]
        self.assertEqual(self.get("/s100/later.jpg", base).code, 200)
        self.assertEqual(worker.counts["s100/later.jpg"], 2)

    def test_unknown_size_does_not_contact_a_worker(self) -> None:
        workers = self.fake_workers(2)
        base = self.front_over(workers)
        self.assert_error(self.get("/nosuch/photo.jpg", base), 404)
        self.assert_error(self.get("/_status", base), 404)
        self.assertEqual(workers[0].total + workers[1].total, 0)

    def test_disable_cache_sends_every_request_to_the_worker(self) -> None:
        [worker] = self.fake_workers(1)
        base = self.front_over([worker], disable_cache=True)
        for _ in range(3):
            response = self.get("/s100/photo.jpg", base)
            self.assertEqual(response.code, 200)
            self.assertEqual(decode(response.body).size, (200, 150))
        self.assertEqual(worker.counts["s100/photo.jpg"], 3)

    def test_result_bigger_than_the_cache_is_served_but_not_cached(self) -> None:
        self.assertGreater(len(THUMB), 1000)
        self.assertLess(len(TINY_GIF), 300)
        [worker] = self.fake_workers(1, files={"s100/tiny.gif": TINY_GIF})
        base = self.front_over([worker], resized_cache_size=1000)
        for _ in range(2):
            big = self.get("/s100/big.jpg", base)
            self.assertEqual(big.code, 200)
            self.assertEqual(int(big.headers["Content-Length"]), len(THUMB))
            self.assertEqual(decode(big.body).size, (200, 150))
            self.assertEqual(self.get("/s100/tiny.gif", base).code, 200)
        self.assertEqual(worker.counts["s100/big.jpg"], 2)
        self.assertEqual(worker.counts["s100/tiny.gif"], 1)

    @gen_test(timeout=20)
    async def test_concurrent_misses_reach_a_fake_worker_once(self) -> None:
        [worker] = self.fake_workers(1, delays={"*": 10})
        state, base = self.start_front(
            make_config(http_origin("master", 9), num_workers=1),
            [url(worker.port)],
        )
        arrived = spy_on(state, "finished")
        requests = [asyncio.ensure_future(self.aget("/s100/x.jpg", base)) for _ in range(6)]
        await arrived.wait_for(6)
        await worker.wait_for_requests(1)
        worker.release()
        responses = await asyncio.gather(*requests)
        self.assertEqual([r.code for r in responses], [200] * 6)
        self.assertEqual(worker.total, 1)


class TestUnavailableWorker(FrontTestCase):
    def test_unreachable_worker_is_503_then_recovers(self) -> None:
        sock, port = self.pool.reserve_port()
        config = make_config(self.worker_config.master, num_workers=1)
        _, base = self.start_front(config, [url(port)])
        started = time.monotonic()
        body = self.assert_error(self.get("/m200/photo.jpg", base), 503)
        self.assertLess(time.monotonic() - started, 2)
        self.assertTrue(body.strip())
        self.assertEqual(self.origin.total, 0)

        app, _state = self.pool.worker_app(self.worker_config)
        self.pool.serve_on(sock, app)
        response = self.get("/m200/photo.jpg", base)
        self.assertEqual(response.code, 200)
        self.assertEqual(decode(response.body).size, (200, 150))
