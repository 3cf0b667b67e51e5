"""``/_health``, ``/_metrics`` and the workers' ``/_stats`` over HTTP, with real workers."""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import ip_network
from typing import Any
from unittest import mock

from tornado.httpclient import HTTPResponse
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port, gen_test
from tornado.web import Application

from phizer import __version__
from phizer.cache.lru import ENTRY_OVERHEAD
from phizer.config.loader import Config
from phizer.process.restarts import RestartBoard
from phizer.web.admin import FrontAdminHandler, is_allowed
from phizer.web.front import FrontState, make_front_app
from phizer.web.urls import parse_request_path
from tests.http_support import (
    PoolTestCase,
    ServerPool,
    StubServer,
    http_origin,
    make_config,
    url,
)
from tests.imagetools import encode, photo
from tests.metrics_support import METRICS_TYPE, Samples, check_exposition, samples

JPEG = encode(photo(400, 300), "JPEG", quality=90)
NUM_WORKERS = 2


def worker_of(filename: str) -> str:
    """The ``worker`` label of the worker that serves ``filename``."""
    return str(zlib.crc32(filename.encode()) % NUM_WORKERS + 1)


def parse_metrics(response: HTTPResponse) -> Samples:
    assert response.code == 200, response.body[:300]
    assert response.headers["Content-Type"] == METRICS_TYPE
    text = response.body.decode("utf-8")
    check_exposition(text)
    return samples(text)


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def total(found: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, pairs), v in found.items() if n == name and wanted <= set(pairs))


class AdminTestCase(PoolTestCase):
    """The test's server is a front over two real workers and one origin."""

    def get_app(self) -> Application:
        self.pool = ServerPool(self.io_loop)
        self.origin, origin_port = self.pool.stub(
            StubServer(files={"photo.jpg": JPEG, "other.jpg": JPEG, "slow.jpg": JPEG})
        )
        # Decoded cache off: the originals cache alone answers repeated images.
        self.config = make_config(
            http_origin("master", origin_port), num_workers=NUM_WORKERS, decoded_cache_size=0
        )
        self.workers = []
        self.worker_urls = []
        for _ in range(NUM_WORKERS):
            state, port = self.pool.worker(self.config)
            self.workers.append(state)
            self.worker_urls.append(url(port))
        self.board = RestartBoard(NUM_WORKERS + 1)
        self.state = FrontState(self.config, self.worker_urls, self.pool.client(), self.board)
        return make_front_app(self.config, self.state)

    def start_front(self, worker_urls: list[str], config: Config | None = None) -> str:
        """Another front in the same loop over ``worker_urls``; its base URL."""
        config = config or make_config(
            self.config.master, num_workers=len(worker_urls), decoded_cache_size=0
        )
        state = FrontState(config, worker_urls, self.pool.client())
        return url(self.pool.start(make_front_app(config, state)))

    def down_url(self) -> str:
        """A worker URL whose port refuses connections."""
        return url(self.pool.reserve_port()[1])

    def health(self, base: str | None = None) -> tuple[int, dict[str, Any]]:
        response = self.get("/_health", base)
        self.assertEqual(response.headers["Content-Type"], "application/json; charset=utf-8")
        self.assertEqual(response.headers["Cache-Control"], "no-store")
        return response.code, json.loads(response.body)


@contextmanager
def probe_timeout(seconds: float) -> Iterator[None]:
    with mock.patch.object(FrontAdminHandler, "probe_timeout", seconds):
        yield


class TestHealth(AdminTestCase):
    def test_all_workers_up_is_200_ok(self) -> None:
        code, health = self.health()
        self.assertEqual(code, 200)
        self.assertEqual(health["status"], "ok")
        self.assertEqual(health["version"], __version__)
        self.assertEqual((health["workers_up"], health["workers_total"]), (2, 2))
        self.assertEqual([w["worker"] for w in health["workers"]], ["1", "2"])
        for worker in health["workers"]:
            self.assertEqual(worker["status"], "up")
            self.assertIsInstance(worker["pid"], int)
            self.assertGreaterEqual(worker["uptime_seconds"], 0)
            self.assertNotIn("error", worker)
        self.assertEqual(health["front"]["in_flight"], 1)  # this very request

    def test_one_worker_down_is_200_degraded(self) -> None:
        base = self.start_front([self.worker_urls[0], self.down_url()])
        code, health = self.health(base)
        self.assertEqual(code, 200)
        self.assertEqual(health["status"], "degraded")
        self.assertEqual(health["workers_up"], 1)
        first, second = health["workers"]
        self.assertEqual((first["worker"], first["status"]), ("1", "up"))
        self.assertEqual((second["worker"], second["status"]), ("2", "down"))
        self.assertEqual(second["error"], "unreachable")
        self.assertNotIn("pid", second)

    def test_no_worker_up_is_503(self) -> None:
        base = self.start_front([self.down_url(), self.down_url()])
        code, health = self.health(base)
        self.assertEqual(code, 503)
        self.assertEqual(health["status"], "down")
        self.assertEqual([w["status"] for w in health["workers"]], ["down", "down"])

    def test_hung_workers_are_asked_at_once_with_a_short_timeout(self) -> None:
        hung = [self.pool.stub(StubServer(delays={"*": 30.0}))[0] for _ in range(3)]
        base = self.start_front([url(worker.port) for worker in hung])
        with probe_timeout(0.5):
            started = time.monotonic()
            code, health = self.health(base)
            elapsed = time.monotonic() - started
        self.assertEqual(code, 503)
        self.assertEqual([w["error"] for w in health["workers"]], ["timed out"] * 3)
        self.assertEqual([w.counts["_stats"] for w in hung], [1, 1, 1])
        self.assertGreaterEqual(elapsed, 0.5)
        self.assertLess(elapsed, 1.4)  # not 3 x 0.5 s one after the other

    def test_a_worker_answering_nonsense_is_down(self) -> None:
        garbage = self.pool.stub(StubServer(default=b"not json"))[0]
        failing = self.pool.stub(StubServer(statuses={"*": 500}))[0]
        base = self.start_front([url(garbage.port), url(failing.port), self.worker_urls[1]])
        code, health = self.health(base)
        self.assertEqual(code, 200)
        self.assertEqual(health["status"], "degraded")
        errors = [w.get("error") for w in health["workers"]]
        self.assertEqual(errors, ["malformed answer", "answered 500", None])

    def test_head(self) -> None:
        response = self.get("/_health", method="HEAD")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.body, b"")
        self.assertEqual(response.headers["Content-Type"], "application/json; charset=utf-8")
        base = self.start_front([self.down_url()])
        self.assertEqual(self.get("/_health", base, method="HEAD").code, 503)


class TestMetrics(AdminTestCase):
    def test_counts_come_from_the_requests_made(self) -> None:
        # photo.jpg: a miss, a hit, then another size of the same original
        # (front miss, worker hit); missing.jpg: a 404 from the origin;
        # an unknown size: a 404 that reaches no worker.
        requests = [
            ("/m200/photo.jpg", 200),
            ("/m200/photo.jpg", 200),
            ("/s100/photo.jpg", 200),
            ("/m200/missing.jpg", 404),
            ("/nosuch/photo.jpg", 404),
        ]
        for path, status in requests:
            self.assertEqual(self.get(path).code, status, path)
        found = parse_metrics(self.get("/_metrics"))

        front = {"worker": "front"}
        self.assertEqual(value(found, "phizer_requests_total", code="200", **front), 3)
        self.assertEqual(value(found, "phizer_requests_total", code="404", **front), 2)
        resized = {"worker": "front", "cache": "resized"}
        self.assertEqual(value(found, "phizer_cache_hits_total", **resized), 1)
        self.assertEqual(value(found, "phizer_cache_misses_total", **resized), 3)
        self.assertEqual(value(found, "phizer_cache_entries", **resized), 2)
        self.assertEqual(
            value(found, "phizer_cache_bytes", **resized), self.state.results.memory.size
        )
        self.assertEqual(value(found, "phizer_cache_evictions_total", **resized), 0)
        self.assertEqual(value(found, "phizer_request_duration_seconds_count", **front), 5)

        photo_worker, missing_worker = worker_of("photo.jpg"), worker_of("missing.jpg")
        self.assertEqual(total(found, "phizer_requests_total", worker=photo_worker, code="200"), 2)
        self.assertEqual(
            total(found, "phizer_requests_total", worker=missing_worker, code="404"), 1
        )
        originals = {"worker": photo_worker, "cache": "originals"}
        self.assertEqual(value(found, "phizer_cache_hits_total", **originals), 1)
        self.assertEqual(total(found, "phizer_cache_misses_total", cache="originals"), 2)
        self.assertEqual(total(found, "phizer_cache_entries", cache="originals"), 1)
        # two origin fetches (photo.jpg and missing.jpg), two resizes of photo.jpg
        fetches = total(found, "phizer_origin_fetch_duration_seconds_count")
        self.assertEqual(fetches, self.origin.total)
        self.assertEqual(fetches, 2)
        resizes = {"worker": photo_worker}
        self.assertEqual(value(found, "phizer_resize_duration_seconds_count", **resizes), 2)
        self.assertGreater(value(found, "phizer_resize_duration_seconds_sum", **resizes), 0)
        for worker in ("1", "2"):
            self.assertEqual(value(found, "phizer_worker_up", worker=worker), 1)
        front_fetches = ("phizer_origin_fetch_duration_seconds_count", (("worker", "front"),))
        self.assertNotIn(front_fetches, found)

    def test_every_process_is_reported_with_its_caches(self) -> None:
        found = parse_metrics(self.get("/_metrics"))
        for worker, cache in (("front", "resized"), ("1", "originals"), ("2", "originals")):
            for name in ("phizer_cache_bytes", "phizer_cache_entries", "phizer_cache_hits_total"):
                self.assertIn((name, (("cache", cache), ("worker", worker))), found)
            self.assertIn(("phizer_in_flight_requests", (("worker", worker),)), found)
            self.assertIn(("phizer_uptime_seconds", (("worker", worker),)), found)
        capacity = value(found, "phizer_cache_capacity_bytes", worker="1", cache="originals")
        self.assertEqual(capacity, self.config.settings.client_cache_size)
        build = [k for k in found if k[0] == "phizer_build_info"]
        self.assertEqual(len(build), 1)
        self.assertIn(("version", __version__), build[0][1])

    def test_restarts_come_from_the_board(self) -> None:
        self.board.record(2)
        self.board.record(2)
        self.board.record(0)
        found = parse_metrics(self.get("/_metrics"))
        restarts = {w: value(found, "phizer_restarts_total", worker=w) for w in ("front", "1", "2")}
        self.assertEqual(restarts, {"front": 1, "1": 0, "2": 2})

    def test_a_down_worker_is_reported_and_the_rest_still_are(self) -> None:
        self.assertEqual(self.get("/m200/photo.jpg").code, 200)
        base = self.start_front([self.worker_urls[0], self.down_url()])
        found = parse_metrics(self.get("/_metrics", base))
        self.assertEqual(value(found, "phizer_worker_up", worker="1"), 1)
        self.assertEqual(value(found, "phizer_worker_up", worker="2"), 0)
        self.assertEqual(value(found, "phizer_restarts_total", worker="2"), 0)
        self.assertIn(("phizer_uptime_seconds", (("worker", "1"),)), found)
        self.assertIn(("phizer_uptime_seconds", (("worker", "front"),)), found)
        # of the down worker only what the front knows: whether it is up, its restarts
        about_down = {name for name, labels in found if ("worker", "2") in labels}
        self.assertEqual(about_down, {"phizer_worker_up", "phizer_restarts_total"})

    def test_workers_answering_garbage_are_down_and_the_rest_still_reported(self) -> None:
        clash = b'# TYPE phizer_requests_total gauge\nphizer_requests_total{code="200"} 9\n'
        own_label = b'# TYPE phizer_x gauge\nphizer_x{worker="front"} 1\n'
        answers = [b"not json", b"", clash, own_label, b"\xff\xfe"]
        stubs = [self.pool.stub(StubServer(files={"_metrics": body}))[0] for body in answers]
        failing = self.pool.stub(StubServer(statuses={"*": 500}))[0]
        urls = [url(stub.port) for stub in [*stubs, failing]]
        base = self.start_front([*urls, self.worker_urls[1]])
        self.assertEqual(self.get("/m200/photo.jpg", self.worker_urls[1]).code, 200)
        found = parse_metrics(self.get("/_metrics", base))
        real = str(len(urls) + 1)
        up = {w: value(found, "phizer_worker_up", worker=w) for w in map(str, range(1, 8))}
        self.assertEqual(up, {**{str(n): 0 for n in range(1, len(urls) + 1)}, real: 1})
        self.assertEqual([stub.counts["_metrics"] for stub in stubs], [1] * len(stubs))
        self.assertEqual(value(found, "phizer_requests_total", worker=real, code="200"), 1)
        self.assertIn(("phizer_uptime_seconds", (("worker", "front"),)), found)
        # nothing of what the down workers said
        said = {name for name, labels in found if ("worker", "3") in labels}
        self.assertEqual(said, {"phizer_worker_up", "phizer_restarts_total"})
        self.assertNotIn(("phizer_x", (("worker", "front"),)), found)

    def test_hung_workers_cost_one_short_timeout(self) -> None:
        hung = [self.pool.stub(StubServer(delays={"*": 30.0}))[0] for _ in range(3)]
        base = self.start_front([url(worker.port) for worker in hung])
        with probe_timeout(0.5):
            started = time.monotonic()
            found = parse_metrics(self.get("/_metrics", base))
            elapsed = time.monotonic() - started
        self.assertEqual([value(found, "phizer_worker_up", worker=w) for w in "123"], [0] * 3)
        self.assertEqual([w.counts["_metrics"] for w in hung], [1, 1, 1])
        self.assertGreaterEqual(elapsed, 0.5)
        self.assertLess(elapsed, 1.4)  # not 3 x 0.5 s one after the other

    def test_no_worker_up_still_renders_the_front(self) -> None:
        base = self.start_front([self.down_url(), self.down_url()])
        self.assertEqual(self.get("/m200/photo.jpg", base).code, 503)
        found = parse_metrics(self.get("/_metrics", base))
        self.assertEqual(value(found, "phizer_requests_total", worker="front", code="503"), 1)
        self.assertEqual([value(found, "phizer_worker_up", worker=w) for w in "12"], [0, 0])

    @gen_test(timeout=20)
    async def test_in_flight_counts_requests_being_served(self) -> None:
        self.origin.delays["slow.jpg"] = 30.0
        held = asyncio.ensure_future(self.aget("/m200/slow.jpg"))
        await self.origin.wait_for_requests(1)
        found = parse_metrics(await self.aget("/_metrics"))
        slow_worker = worker_of("slow.jpg")
        idle_worker = "2" if slow_worker == "1" else "1"
        # the scrape itself is in flight at the front and in each worker's /_stats
        self.assertEqual(value(found, "phizer_in_flight_requests", worker="front"), 2)
        self.assertEqual(value(found, "phizer_in_flight_requests", worker=slow_worker), 2)
        self.assertEqual(value(found, "phizer_in_flight_requests", worker=idle_worker), 1)
        self.origin.release()
        self.assertEqual((await held).code, 200)
        found = parse_metrics(await self.aget("/_metrics"))
        self.assertEqual(value(found, "phizer_in_flight_requests", worker="front"), 1)
        self.assertEqual(value(found, "phizer_in_flight_requests", worker=slow_worker), 1)

    def test_evictions_are_counted(self) -> None:
        # Equal originals make equal results; the cache holds exactly two of them.
        names = [f"same-{i}.jpg" for i in range(5)]
        self.origin.files.update(dict.fromkeys(names, JPEG))
        result = self.get(f"/m200/{names[0]}", self.worker_urls[0]).body
        cost = len(result) + len(parse_request_path(f"/m200/{names[0]}").key) + ENTRY_OVERHEAD
        config = make_config(self.config.master, num_workers=2, resized_cache_size=2 * cost)
        state = FrontState(config, self.worker_urls, self.pool.client())
        base = url(self.pool.start(make_front_app(config, state)))
        for name in names:
            self.assertEqual(self.get(f"/m200/{name}", base).body, result)
        found = parse_metrics(self.get("/_metrics", base))
        resized = {"worker": "front", "cache": "resized"}
        self.assertEqual(value(found, "phizer_cache_evictions_total", **resized), len(names) - 2)
        self.assertEqual(value(found, "phizer_cache_entries", **resized), 2)
        self.assertEqual(value(found, "phizer_cache_bytes", **resized), 2 * cost)

    def test_head(self) -> None:
        response = self.get("/_metrics", method="HEAD")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.body, b"")
        self.assertEqual(response.headers["Content-Type"], METRICS_TYPE)


class TestAccess(AdminTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.servers: list[HTTPServer] = []

    def tearDown(self) -> None:
        for server in self.servers:
            server.stop()
            self.io_loop.run_sync(server.close_all_connections, timeout=5)
        super().tearDown()

    def refusing_front(self) -> str:
        """A front that admits admin requests from 10.0.0.0/8 only."""
        config = make_config(
            self.config.master,
            num_workers=NUM_WORKERS,
            admin_allow=(ip_network("10.0.0.0/8"),),
        )
        state = FrontState(config, self.worker_urls, self.pool.client())
        sock, port = bind_unused_port()
        server = HTTPServer(make_front_app(config, state))  # as phizer serves: no xheaders
        server.add_sockets([sock])
        self.servers.append(server)
        return url(port)

    def test_peers_outside_admin_allow_get_403(self) -> None:
        base = self.refusing_front()
        for path in ("/_health", "/_metrics"):
            for method in ("GET", "HEAD"):
                with self.subTest(path=path, method=method):
                    response = self.get(path, base, method=method)
                    self.assertEqual(response.code, 403)
                    self.assertNotIn(b"phizer_", response.body)
        self.assertEqual(self.get("/m200/photo.jpg", base).code, 200)  # images are not admin

    def test_forwarded_headers_do_not_open_the_door(self) -> None:
        base = self.refusing_front()
        spoofed = {"X-Forwarded-For": "10.1.2.3", "X-Real-Ip": "10.1.2.3"}
        for path in ("/_health", "/_metrics"):
            with self.subTest(path=path):
                self.assertEqual(self.get(path, base, headers=spoofed).code, 403)

    def test_allowed_peer_gets_in(self) -> None:
        self.assertEqual(self.get("/_metrics").code, 200)

    def test_other_service_paths_stay_404(self) -> None:
        for path in ("/_stats", "/_healthz", "/_health/", "/_metrics/x", "/_", "/_Metrics"):
            with self.subTest(path=path):
                self.assertEqual(self.get(path).code, 404)

    def test_admin_allow_decisions(self) -> None:
        networks = (ip_network("127.0.0.0/8"), ip_network("::1/128"), ip_network("10.0.0.0/8"))
        allowed = ["127.0.0.1", "127.9.9.9", "::1", "10.200.0.1", "::ffff:127.0.0.1"]
        refused = ["192.168.1.1", "::2", "::ffff:192.168.1.1", "", "not-an-ip", "0.0.0.0"]
        for address in allowed:
            self.assertTrue(is_allowed(address, networks), address)
        for address in refused:
            self.assertFalse(is_allowed(address, networks), address)
        self.assertFalse(is_allowed("127.0.0.1", ()))


class TestWorkerStats(AdminTestCase):
    def test_worker_stats_and_metrics_and_the_image_route_still_works(self) -> None:
        worker = self.worker_urls[0]
        self.assertEqual(self.get("/m200/photo.jpg", worker).code, 200)
        self.assertEqual(self.get("/m200/photo.jpg", worker).code, 200)
        response = self.get("/_stats", worker)
        self.assertEqual(response.code, 200)
        stats = json.loads(response.body)
        self.assertEqual(stats["in_flight"], 1)
        self.assertIsInstance(stats["pid"], int)
        self.assertGreaterEqual(stats["uptime_seconds"], 0)

        found = parse_metrics(self.get("/_metrics", worker))
        # the two images and the /_stats request; this one is still in flight
        self.assertEqual(value(found, "phizer_requests_total", code="200"), 3)
        self.assertEqual(value(found, "phizer_in_flight_requests"), 1)
        self.assertEqual(value(found, "phizer_cache_hits_total", cache="originals"), 1)
        self.assertEqual(value(found, "phizer_cache_misses_total", cache="originals"), 1)
        self.assertEqual(value(found, "phizer_cache_capacity_bytes", cache="decoded"), 0)
        self.assertEqual(value(found, "phizer_origin_fetch_duration_seconds_count"), 1)
        self.assertEqual(value(found, "phizer_resize_duration_seconds_count"), 2)
        self.assertEqual(self.workers[0].originals.memory.stats.hits, 1)
        self.assertFalse(any(("worker", "1") in labels for _, labels in found))

    def test_other_service_paths_on_a_worker_are_404(self) -> None:
        for path in ("/_health", "/_metrics/x", "/_stats/x"):
            with self.subTest(path=path):
                self.assertEqual(self.get(path, self.worker_urls[0]).code, 404)
