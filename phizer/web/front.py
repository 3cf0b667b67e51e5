"""The front: answers from its LRU of finished images, else asks a worker.

Misses go to worker ``crc32(filename) % N`` so every size of one original
is made where that original is cached. Identical concurrent misses share
one worker request.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from tornado.curl_httpclient import CurlAsyncHTTPClient
from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse
from tornado.web import Application

from phizer.cache.lru import ByteLRU
from phizer.cache.singleflight import SingleFlight
from phizer.config.loader import Config
from phizer.errors import (
    NotFound,
    WorkerTimeout,
    WorkerUnavailable,
    error_for_status,
)
from phizer.process.restarts import RestartBoard
from phizer.tiers.chain import open_tiers
from phizer.tiers.disk import RESULTS
from phizer.tiers.keys import TierKeys
from phizer.tiers.records import pack_result, unpack_result
from phizer.transport import TransportFailure, fetch
from phizer.web.admin import ProcessMetrics, front_routes
from phizer.web.handler import BaseHandler, InFlight, log_request
from phizer.web.negotiate import offers_for, offers_query, variant_key
from phizer.web.preview import preview_routes
from phizer.web.urls import ImageRequest, parse_request_path, worker_index
from phizer.web.worker import FETCH_MS_HEADER, RESIZE_MS_HEADER

log = logging.getLogger("phizer.front")

# Enough parallel front-to-worker requests that the front never queues
# behind a slow origin; the workers themselves bound the real work.
WORKER_CLIENTS = 512
_MAX_ERROR_BODY = 200
# Cache results for which no worker was asked (the access log's worker is "-").
SERVED_WITHOUT_WORKER = ("hit", "disk", "shared")


@dataclass(frozen=True)
class FinishedImage:
    data: bytes
    content_type: str
    etag: str
    fetch_ms: float | None = None
    resize_ms: float | None = None
    tier: str | None = None  # the cache tier it came from (disk, shared), if any

    @property
    def nbytes(self) -> int:
        return len(self.data)


class FrontState:
    def __init__(
        self,
        config: Config,
        worker_urls: Sequence[str],
        client: AsyncHTTPClient,
        restarts: RestartBoard | None = None,
    ) -> None:
        settings = config.settings
        self.config = config
        self.worker_urls = tuple(worker_urls)
        self.client = client
        self.restarts = restarts or RestartBoard()
        self.results: ByteLRU[FinishedImage] = ByteLRU(
            0 if settings.disable_cache else settings.resized_cache_size
        )
        self.inflight: SingleFlight[FinishedImage] = SingleFlight()
        # Requests waiting on each worker; past max_worker_queue new misses
        # get 503 at once rather than a 504 after waiting worker_timeout.
        self.queued = [0] * len(self.worker_urls)
        self.metrics = ProcessMetrics({"resized": self.results})
        self.keys = TierKeys(config)
        self.tiers = open_tiers(config, RESULTS, self.metrics.tiers)

    async def finished(
        self, request: ImageRequest, offers: tuple[str, ...] = ()
    ) -> tuple[FinishedImage, str]:
        """``offers``: the negotiated formats (phizer.negotiate), one cache entry each."""
        key = variant_key(request.key, offers)
        cached = self.results.get(key)
        if cached is not None:
            return cached, "hit"
        image, joined = await self.inflight.run(key, lambda: self._make(request, offers, key))
        return image, "coalesced" if joined else (image.tier or "miss")

    async def _make(
        self, request: ImageRequest, offers: tuple[str, ...], key: str
    ) -> FinishedImage:
        """From the disk or shared tier, else from the worker (then written
        back to the tiers in the background)."""
        tier_key = self.keys.result(request.size, key) if self.tiers else ""
        found = await self.tiers.get(tier_key, unpack_result) if self.tiers else None
        if found is not None:
            record = found.value
            image = FinishedImage(
                record.data, record.content_type, strong_etag(record.data), tier=found.tier
            )
            self.results.put(key, image)
            return image
        image = await self._from_worker(request, offers, key)
        if self.tiers:
            self.tiers.put_later(tier_key, pack_result(image.content_type, image.data))
        return image

    async def _from_worker(
        self, request: ImageRequest, offers: tuple[str, ...], key: str
    ) -> FinishedImage:
        index = worker_index(request.filename, len(self.worker_urls))
        worker_request = HTTPRequest(
            self.worker_urls[index] + request.key + offers_query(offers),
            connect_timeout=self.config.settings.origin_connect_timeout,
            request_timeout=self.config.settings.worker_timeout,
            follow_redirects=False,
        )
        response = await self._ask_worker(index, worker_request)
        if response.code != 200:
            message = response.body[:_MAX_ERROR_BODY].decode("utf-8", "replace").strip()
            raise error_for_status(response.code, message)
        image = FinishedImage(
            response.body,
            response.headers.get("Content-Type", "application/octet-stream"),
            strong_etag(response.body),
            _float_header(response.headers.get(FETCH_MS_HEADER)),
            _float_header(response.headers.get(RESIZE_MS_HEADER)),
        )
        self.results.put(key, image)
        return image

    async def close(self, timeout: float) -> None:
        """Finish pending write-backs (at most ``timeout`` s), release the tiers."""
        await self.tiers.close(timeout)

    async def _ask_worker(self, index: int, worker_request: HTTPRequest) -> HTTPResponse:
        """One retry for a connection that failed at once: a worker that is
        stopping (reload, restart) may close a connection it had just
        accepted, and a GET to a worker is safe to repeat."""
        if self.queued[index] >= self.config.settings.max_worker_queue:
            raise WorkerUnavailable(f"worker {index + 1} is busy")
        self.queued[index] += 1
        try:
            for attempt in range(2):
                try:
                    return await fetch(self.client, worker_request)
                except TransportFailure as failure:
                    if failure.timed_out:
                        raise WorkerTimeout(f"worker {index + 1} timed out") from None
                    if attempt == 1:
                        log.warning("worker %d unavailable: %s", index + 1, failure)
            raise WorkerUnavailable(f"worker {index + 1} unavailable")
        finally:
            self.queued[index] -= 1


class FrontHandler(BaseHandler):
    def initialize(self, state: FrontState) -> None:  # type: ignore[override]
        super().initialize()
        self.state = state

    async def serve(self) -> None:
        path = self.request_path()
        if path.startswith("/_"):
            raise NotFound("no such service path")
        request = parse_request_path(path)
        if request.size not in self.state.config.sizes:
            raise NotFound("unknown size")
        # For the access log; a failure from here on happened at this worker.
        self.worker = worker_index(request.filename, len(self.state.worker_urls)) + 1
        auto_format = self.state.config.settings.auto_format
        offers = offers_for(self.request.headers.get("Accept"), auto_format)
        image, self.cache_result = await self.state.finished(request, offers)
        if auto_format:
            # Every answer, the source-format one included, depends on Accept.
            self.set_header("Vary", "Accept")
        if self.cache_result in SERVED_WITHOUT_WORKER:
            self.worker = None
        if self.cache_result == "miss":
            self.fetch_ms, self.resize_ms = image.fetch_ms, image.resize_ms
        self._set_caching_headers(image.etag)
        if etag_matches(self.request.headers.get("If-None-Match", ""), image.etag):
            self.set_status(304)
            self.finish()
            return
        self.set_header("Content-Type", image.content_type)
        self.finish(image.data)

    def _set_caching_headers(self, etag: str) -> None:
        self.set_header("ETag", etag)
        max_age = self.state.config.settings.max_age
        if max_age > 0:
            self.set_header("Cache-Control", f"max-age={max_age}")
            self.set_header("Expires", email.utils.formatdate(time.time() + max_age, usegmt=True))


def strong_etag(data: bytes) -> str:
    return '"' + hashlib.blake2b(data, digest_size=16).hexdigest() + '"'


def etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 ``If-None-Match``: a list of tags or ``*``; weak prefix ignored."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def _float_header(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def worker_urls(config: Config) -> list[str]:
    port = config.settings.bind_port
    return [f"http://127.0.0.1:{port + i}" for i in range(1, config.settings.num_workers + 1)]


def make_front_app(
    config: Config, state: FrontState | None = None, restarts: RestartBoard | None = None
) -> Application:
    if state is None:
        client = CurlAsyncHTTPClient(force_instance=True, max_clients=WORKER_CLIENTS)
        state = FrontState(config, worker_urls(config), client, restarts)
    return Application(
        [*front_routes(state), *preview_routes(state), (r"/.*", FrontHandler, {"state": state})],
        log_function=log_request,
        trusted_proxies=config.settings.trusted_proxies,
        metrics=state.metrics,
        in_flight=InFlight(),
        state=state,
        compress_response=False,
    )
