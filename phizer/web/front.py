"""The front: answers from its cache of finished images, else asks a worker.

Misses go to worker ``crc32(filename) % N`` (``phizer.web.protocol``) so
every size of one original is made where that original is cached.
Identical concurrent misses share one worker request.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tornado.curl_httpclient import CurlAsyncHTTPClient
from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse
from tornado.web import Application

from phizer.cache.lru import ByteLRU
from phizer.cache.readthrough import HIT, MISS, Codec, Names, ReadThrough
from phizer.config.loader import Config
from phizer.errors import Forbidden, NotFound, WorkerTimeout, WorkerUnavailable, error_for_status
from phizer.tiers.chain import open_tiers, purge_bus
from phizer.tiers.disk import RESULTS
from phizer.tiers.keys import TierKeys
from phizer.tiers.records import Envelope, pack_result, unpack_result
from phizer.transport import TransportFailure, fetch
from phizer.web.admin import (
    FrontAdmin,
    NoRestarts,
    RestartCounts,
    front_routes,
    is_allowed,
    peer_address,
)
from phizer.web.handler import BaseHandler, HandlerContext, log_request, unroutable
from phizer.web.inflight import InFlight
from phizer.web.metrics import FrontMetrics
from phizer.web.negotiate import offers_for, variant_key
from phizer.web.preview import preview_routes
from phizer.web.protocol import (
    EXPIRES_HEADER,
    FETCH_MS_HEADER,
    RESIZE_MS_HEADER,
    parse_ms,
    worker_index,
    worker_url,
    worker_urls,
)
from phizer.web.purge import FrontPurge, purge_route
from phizer.web.urls import ImageRequest, parse_request_path

log = logging.getLogger("phizer.front")

# Enough parallel front-to-worker requests that the front never queues
# behind a slow origin; the workers themselves bound the real work.
WORKER_CLIENTS = 512
_MAX_ERROR_BODY = 200


@dataclass(frozen=True)
class FinishedImage:
    data: bytes
    content_type: str
    etag: str
    fetch_ms: float | None = None
    resize_ms: float | None = None
    expires: float = 0.0  # when its original's freshness ends (Unix time); 0: never

    @property
    def nbytes(self) -> int:
        return len(self.data)


def _pack(image: FinishedImage) -> bytes:
    return pack_result(image.content_type, image.data)


def _unpack(envelope: Envelope) -> FinishedImage | None:
    record = unpack_result(envelope.payload)
    if record is None:
        return None
    return FinishedImage(
        record.data, record.content_type, strong_etag(record.data), expires=envelope.expires
    )


class FrontState:
    """Everything the front keeps between requests."""

    def __init__(
        self,
        config: Config,
        worker_urls: Sequence[str],
        client: AsyncHTTPClient,
        restarts: RestartCounts | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        settings = config.settings
        self.clock = clock  # Unix time: whether finished images are past their original's
        self.config = config
        self.worker_urls = tuple(worker_urls)
        self.client = client
        self.restarts = restarts or NoRestarts()
        self.in_flight = InFlight()
        memory: ByteLRU[FinishedImage] = ByteLRU(
            0 if settings.disable_cache else settings.resized_cache_size
        )
        self.metrics = FrontMetrics({"resized": memory})
        self.metrics.watch_in_flight(self.in_flight)
        self.results = ReadThrough(
            memory, open_tiers(config, RESULTS, self.metrics.tiers), Codec(_pack, _unpack), clock
        )
        self.keys = TierKeys(config)
        # Requests waiting on each worker; past max_worker_queue new misses
        # get 503 at once rather than a 504 after waiting worker_timeout.
        self.queued = [0] * len(self.worker_urls)
        self.bus = purge_bus(config)
        self.purges = FrontPurge(
            self._purge_here,
            self.worker_urls,
            client,
            self.bus.publish if self.bus is not None else None,
        )

    def start(self) -> None:
        """What runs beside the requests: hearing other hosts' purges."""
        if self.bus is not None:
            self.bus.start(self.purges.heard)

    async def _purge_here(self, path: str) -> int:
        self.metrics.purges.inc()
        return await self.results.purge(path, lambda: self.keys.group(path))

    async def finished(
        self, request: ImageRequest, offers: tuple[str, ...] = ()
    ) -> tuple[FinishedImage, str]:
        """The image and how it was had (see ``ReadThrough.get``); ``offers``:
        the negotiated formats (phizer.web.negotiate), one cache entry each."""
        key = variant_key(request.key, offers)
        names = Names(
            key,
            request.path,
            lambda: self.keys.result(request.size, key),
            lambda: self.keys.group(request.path),
        )
        return await self.results.get(names, lambda: self._from_worker(request, offers))

    async def _from_worker(self, request: ImageRequest, offers: tuple[str, ...]) -> FinishedImage:
        index = worker_index(request.filename, len(self.worker_urls))
        worker_request = HTTPRequest(
            worker_url(self.worker_urls[index], request.key, offers),
            connect_timeout=self.config.settings.origin_connect_timeout,
            request_timeout=self.config.settings.worker_timeout,
            follow_redirects=False,
        )
        response = await self._ask_worker(index, worker_request)
        if response.code != 200:
            message = response.body[:_MAX_ERROR_BODY].decode("utf-8", "replace").strip()
            raise error_for_status(response.code, message)
        return FinishedImage(
            response.body,
            response.headers.get("Content-Type", "application/octet-stream"),
            strong_etag(response.body),
            parse_ms(response.headers.get(FETCH_MS_HEADER)),
            parse_ms(response.headers.get(RESIZE_MS_HEADER)),
            parse_ms(response.headers.get(EXPIRES_HEADER)) or 0.0,
        )

    async def close(self, timeout: float) -> None:
        """Finish pending write-backs (at most ``timeout`` s), release the tiers."""
        if self.bus is not None:
            self.bus.close()
        await self.results.close(timeout)

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
    SUPPORTED_METHODS = ("GET", "HEAD", "PURGE")

    def initialize(self, state: FrontState, context: HandlerContext) -> None:  # type: ignore[override]
        super().initialize(context)
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
        if self.cache_result in (HIT, *self.state.results.tiers.names):
            self.worker = None  # no worker was asked
        elif self.cache_result == MISS:
            self.fetch_ms, self.resize_ms = image.fetch_ms, image.resize_ms
        self.set_header("ETag", image.etag)
        self._set_max_age(image.expires)
        if self.check_etag_header():
            self.set_status(304)
            self.finish()
            return
        self.set_header("Content-Type", image.content_type)
        self.finish(image.data)

    async def purge(self, *_: str) -> None:
        """``PURGE /<size>/<path>``: the photo, whatever the size named."""
        if not is_allowed(peer_address(self), self.state.config.settings.admin_allow):
            raise Forbidden()
        request = parse_request_path(self.request_path())
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Type", "application/json; charset=utf-8")
        answer = await self.state.purges.purge(request.path)
        self.finish(json.dumps(answer, separators=(",", ":")) + "\n")

    def _set_max_age(self, expires: float) -> None:
        """``max_age``, but never past the original's freshness (``expires``)."""
        max_age = self.state.config.settings.max_age
        now = self.state.clock()
        if max_age > 0 and expires:
            max_age = max(0, min(max_age, int(expires - now)))
        if max_age > 0:
            self.set_header("Cache-Control", f"max-age={max_age}")
            self.set_header("Expires", email.utils.formatdate(now + max_age, usegmt=True))
        elif self.state.config.settings.max_age > 0:
            self.set_header("Cache-Control", "max-age=0")


def strong_etag(data: bytes) -> str:
    return '"' + hashlib.blake2b(data, digest_size=16).hexdigest() + '"'


def make_front_app(
    config: Config, state: FrontState | None = None, restarts: RestartCounts | None = None
) -> Application:
    if state is None:
        client = CurlAsyncHTTPClient(force_instance=True, max_clients=WORKER_CLIENTS)
        urls = worker_urls(config.settings.bind_port, config.settings.num_workers)
        state = FrontState(config, urls, client, restarts)
    context = HandlerContext(state.in_flight, state.metrics, config.settings.trusted_proxies)
    admin = FrontAdmin(
        state.worker_urls, state.client, state.restarts, state.metrics, config.settings.admin_allow
    )
    return Application(
        [
            *front_routes(admin, context),
            purge_route(state.purges.purge, config.settings.admin_allow, context),
            *preview_routes(state, context),
            (r"/.*", FrontHandler, {"state": state, "context": context}),
        ],
        log_function=log_request,
        compress_response=False,
        **unroutable(context),
    )
