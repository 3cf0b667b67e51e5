"""Purge, revalidation and missing originals over HTTP: a front over a real
worker and a stub origin, on a clock the tests move."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

from PIL import Image
from tornado.httpclient import HTTPResponse
from tornado.web import Application

from phizer.web.worker import WorkerState, make_origin_set, make_worker_app
from tests.http_support import (
    PoolTestCase,
    ServerPool,
    StubServer,
    http_origin,
    make_config,
    url,
)
from tests.imagetools import decode, encode

RED = encode(Image.new("RGB", (400, 300), (220, 20, 20)), "JPEG", quality=90)
BLUE = encode(Image.new("RGB", (400, 300), (20, 20, 220)), "JPEG", quality=90)
URLS = ("/s100/p.jpg", "/m200/p.jpg", "/sq100/p.jpg", "/s100/0x0/500x500/p.jpg")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def colour(response: HTTPResponse) -> str:
    assert response.code == 200, response.body[:200]
    red, _green, blue = decode(response.body).convert("RGB").getpixel((10, 10))
    return "red" if red > blue else "blue"


class FreshnessCase(PoolTestCase):
    settings: dict[str, Any] = {}

    def get_app(self) -> Application:
        self.pool = ServerPool(self.io_loop)
        self.clock = Clock()
        self.origin, port = self.pool.stub(StubServer(files={"p.jpg": RED}))
        self.config = make_config(http_origin("master", port), **self.settings)
        client = self.pool.client()
        self.worker = WorkerState(self.config, make_origin_set(self.config, client), self.clock)
        worker_url = url(self.pool.start(make_worker_app(self.config, self.worker)))
        app, self.front = self.pool.front_app(self.config, [worker_url])
        self.front.clock = self.front.results.clock = self.clock
        return app

    def sample(self, name: str, **labels: str) -> float | None:
        return self.worker.metrics.registry.get_sample_value(name, labels)

    def colours(self) -> list[str]:
        return [colour(self.get(path)) for path in URLS]

    def purge(self, path: str, method: str = "PURGE", base: str | None = None) -> HTTPResponse:
        return self.get(path, base, method=method, allow_nonstandard_methods=True, body=b"")


class TestPurge(FreshnessCase):
    def test_purge_drops_the_original_and_every_image_made_from_it(self) -> None:
        self.assertEqual(self.colours(), ["red"] * 4)
        self.origin.files["p.jpg"] = BLUE
        self.assertEqual(self.colours(), ["red"] * 4)  # cached: the origin is not asked
        self.assertEqual(self.origin.counts["p.jpg"], 1)
        response = self.purge("/m200/p.jpg")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers["Cache-Control"], "no-store")
        answer = json.loads(response.body)
        self.assertEqual(answer["path"], "p.jpg")
        self.assertEqual(answer["front"], {"finished": 4})
        self.assertEqual(answer["workers"], [{"worker": "1", "originals": 1, "decoded": 1}])
        self.assertEqual(self.colours(), ["blue"] * 4)
        self.assertEqual(self.origin.counts["p.jpg"], 2)

    def test_post_to_purge_does_the_same(self) -> None:
        self.assertEqual(colour(self.get("/s100/p.jpg")), "red")
        self.origin.files["p.jpg"] = BLUE
        response = self.purge("/_purge/p.jpg", method="POST")
        self.assertEqual(json.loads(response.body)["front"], {"finished": 1})
        self.assertEqual(colour(self.get("/s100/p.jpg")), "blue")

    def test_other_photos_stay(self) -> None:
        self.origin.files["q.jpg"] = RED
        self.assertEqual(colour(self.get("/s100/q.jpg")), "red")
        self.purge("/s100/p.jpg")
        self.assertIn("/s100/q.jpg", self.front.results.memory)
        self.assertNotIn("/s100/p.jpg", self.front.results.memory)

    def test_malformed_paths_are_refused(self) -> None:
        for path in ("/_purge/a/../b.jpg", "/_purge/a%2fb.jpg", "/_purge//x.jpg"):
            with self.subTest(path=path):
                self.assertEqual(self.purge(path, method="POST").code, 400)
        self.assertEqual(self.purge("/s100/p.jpg", method="DELETE").code, 405)

    def test_only_admin_peers_may_purge(self) -> None:
        config = make_config(self.config.master, admin_allow=())
        app, state = self.pool.front_app(config, list(self.front.worker_urls))
        base = url(self.pool.start(app))
        self.assertEqual(colour(self.get("/s100/p.jpg", base)), "red")
        self.assertEqual(self.purge("/s100/p.jpg", base=base).code, 403)
        self.assertEqual(self.purge("/_purge/p.jpg", method="POST", base=base).code, 403)
        self.assertEqual(len(state.results.memory), 1)


class TestRevalidation(FreshnessCase):
    settings = {"original_ttl": 60, "max_age": 3600}

    def test_within_the_ttl_nothing_is_asked(self) -> None:
        self.assertEqual(self.colours(), ["red"] * 4)
        self.clock.now += 59
        self.assertEqual(self.colours(), ["red"] * 4)
        self.assertEqual(self.origin.counts["p.jpg"], 1)

    def test_an_unchanged_original_is_confirmed_by_a_conditional_get(self) -> None:
        self.assertEqual(self.colours(), ["red"] * 4)
        self.clock.now += 61
        response = self.get("/s100/p.jpg")
        self.assertEqual(colour(response), "red")
        self.assertEqual(self.origin.counts["p.jpg"], 2)
        self.assertIsNone(self.origin.conditions[0])
        self.assertIsNotNone(self.origin.conditions[1])  # answered 304 by the origin
        self.assertEqual(self.colours(), ["red"] * 4)  # fresh again: nothing more asked
        self.assertEqual(self.origin.counts["p.jpg"], 2)
        self.assertEqual(self.sample("phizer_revalidations_total", result="unchanged"), 1)

    def test_a_changed_original_replaces_every_size(self) -> None:
        self.assertEqual(self.colours(), ["red"] * 4)
        self.origin.files["p.jpg"] = BLUE
        self.clock.now += 61
        self.assertEqual(self.colours(), ["blue"] * 4)
        self.assertEqual(self.origin.counts["p.jpg"], 2)

    def test_a_deleted_original_is_404_at_every_size(self) -> None:
        self.assertEqual(self.colours(), ["red"] * 4)
        del self.origin.files["p.jpg"]
        self.clock.now += 61
        for path in URLS:
            self.assertEqual(self.get(path).code, 404, path)
        self.assertNotIn("p.jpg", self.worker.decoded)

    def test_a_failing_origin_keeps_the_copy_served(self) -> None:
        self.assertEqual(colour(self.get("/s100/p.jpg")), "red")
        self.origin.statuses["p.jpg"] = 500
        self.clock.now += 61
        response = self.get("/m200/p.jpg")
        self.assertEqual(colour(response), "red")
        self.assertEqual(self.sample("phizer_revalidations_total", result="failed"), 1)
        self.assertEqual(self.sample("phizer_stale_answers_total"), 1)
        # An answer made from a stale copy is not kept at the front.
        self.assertNotIn("/m200/p.jpg", self.front.results.memory)

    def test_max_age_never_outlives_the_original(self) -> None:
        response = self.get("/s100/p.jpg")
        self.assertEqual(response.headers["Cache-Control"], "max-age=60")
        self.clock.now += 45
        self.assertEqual(self.get("/s100/p.jpg").headers["Cache-Control"], "max-age=15")


class TestMissing(FreshnessCase):
    settings = {"missing_ttl": 30}

    def test_a_missing_photo_costs_the_origin_one_request_until_purged(self) -> None:
        for path in ("/s100/gone.jpg", "/m200/gone.jpg", "/s100/gone.jpg"):
            self.assertEqual(self.get(path).code, 404)
        self.assertEqual(self.origin.counts["gone.jpg"], 1)
        self.origin.files["gone.jpg"] = RED
        self.assertEqual(self.get("/s100/gone.jpg").code, 404)  # still remembered
        self.purge("/s100/gone.jpg")
        self.assertEqual(colour(self.get("/s100/gone.jpg")), "red")
        self.assertEqual(self.origin.counts["gone.jpg"], 2)


class TestFailures(FreshnessCase):
    settings = {"failure_ttl": 60}

    def test_an_original_that_failed_answers_from_memory_at_every_size(self) -> None:
        self.origin.files["bad.jpg"] = b"\xff\xd8\xff\xe0 not really a jpeg" + bytes(200)
        with mock.patch.object(
            self.worker, "from_original", wraps=self.worker.from_original
        ) as rendering:
            statuses = [
                self.get(path).code
                for path in ("/s100/bad.jpg", "/m200/bad.jpg", "/s100/0x0/500x500/bad.jpg")
            ]
            self.assertEqual(statuses, [502, 502, 502])
            self.assertEqual(rendering.call_count, 1)  # tried once, then remembered
            self.purge("/s100/bad.jpg")
            self.origin.files["bad.jpg"] = RED
            self.assertEqual(colour(self.get("/s100/bad.jpg")), "red")
            self.assertEqual(rendering.call_count, 2)
