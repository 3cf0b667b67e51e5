"""Overload: a busy worker's queue is bounded at the front, and a worker
skips the resize of a request the front has already given up on."""

from __future__ import annotations

import asyncio
from unittest import mock

from tornado.simple_httpclient import HTTPTimeoutError
from tornado.testing import gen_test
from tornado.web import Application

from tests.http_support import (
    PoolTestCase,
    ServerPool,
    StubServer,
    http_origin,
    make_config,
    url,
)
from tests.imagetools import encode, photo

JPEG = encode(photo(400, 300), "JPEG")


class TestOverload(PoolTestCase):
    def get_app(self) -> Application:
        self.pool = ServerPool(self.io_loop)
        self.origin, self.origin_port = self.pool.stub(StubServer(default=JPEG))
        # Decoded cache off: every request that is served goes through from_original.
        app, self.worker = self.pool.worker_app(
            make_config(http_origin("master", self.origin_port), decoded_cache_size=0)
        )
        return app

    @gen_test(timeout=20)
    async def test_a_full_worker_queue_is_503_at_once_then_serves_again(self) -> None:
        held = StubServer(default=JPEG, delays={"*": 10})
        self.pool.stub(held)
        config = make_config(http_origin("master", 9), num_workers=1, max_worker_queue=2)
        state, base = self._front(config, [url(held.port)])
        waiting = [asyncio.ensure_future(self.aget(f"/s100/{n}.jpg", base)) for n in range(2)]
        await held.wait_for_requests(2)
        refused = await self.aget("/s100/third.jpg", base)
        self.assertEqual(refused.code, 503)
        self.assertEqual(refused.headers["Retry-After"], "1")
        self.assertIn(b"busy", refused.body)
        self.assertEqual(held.total, 2)
        held.release()
        self.assertEqual([r.code for r in await asyncio.gather(*waiting)], [200, 200])
        self.assertEqual((await self.aget("/s100/third.jpg", base)).code, 200)
        self.assertEqual(state.queued, [0])

    @gen_test(timeout=20)
    async def test_a_request_the_front_gave_up_on_is_not_resized(self) -> None:
        self.origin.delays["slow.jpg"] = 10
        rendered = mock.patch.object(
            self.worker, "from_original", wraps=self.worker.from_original
        ).start()
        self.addCleanup(mock.patch.stopall)
        with self.assertRaises(HTTPTimeoutError):
            await self.http_client.fetch(self.get_url("/s100/slow.jpg"), request_timeout=0.5)
        await self.origin.wait_for_requests(1)
        self.origin.release()
        # The next request for the same original joins no fetch and is served.
        served = await self.aget("/m200/slow.jpg")
        self.assertEqual(served.code, 200)
        self.assertEqual(rendered.call_count, 1)  # only the second request was resized

    def _front(self, config, worker_urls):  # type: ignore[no-untyped-def]
        app, state = self.pool.front_app(config, worker_urls)
        return state, url(self.pool.start(app))
