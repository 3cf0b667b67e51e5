"""The front: answers from its cache of finished images, else asks a worker.

Misses go to worker ``crc32(filename) % N`` (``phizer.web.protocol``) so
every size of one original is made where that original is cached.
Identical concurrent misses share one worker request. An original served
untouched is passed on as it arrives (``phizer.web.relay``), not held whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from tornado.curl_httpclient import CurlAsyncHTTPClient
from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse
from tornado.httputil import HTTPHeaders, HTTPOutputError
from tornado.iostream import StreamClosedError
from tornado.web import Application

from phizer.cache.lru import ByteLRU
from phizer.cache.readthrough import HIT, MISS, Codec, Names, ReadThrough
from phizer.config.loader import Config
from phizer.errors import Forbidden, NotFound, WorkerTimeout, WorkerUnavailable, error_for_status
from phizer.imaging.pipeline import serves_untouched
from phizer.origins.base import InFlightBytes
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
    strong_etag,
    worker_index,
    worker_url,
    worker_urls,
)
from phizer.web.purge import FrontPurge, purge_route
from phizer.web.relay import Head, Relay
from phizer.web.urls import ImageRequest, parse_request_path

log = logging.getLogger("phizer.front")

# Enough parallel front-to-worker requests that the front never queues
# behind a slow origin; the workers themselves bound the real work.
WORKER_CLIENTS = 512
_MAX_ERROR_BODY = 200
# A relayed image larger than this share of the front's cache is not kept
# there: it would push out many finished images, and its worker keeps the
# original anyway.
KEEP_SHARE = 8


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
        relay_client: AsyncHTTPClient | None = None,
    ) -> None:
        settings = config.settings
        self.clock = clock  # Unix time: whether finished images are past their original's
        self.config = config
        self.worker_urls = tuple(worker_urls)
        self.client = client
        # Relays set curl callbacks of their own on every handle they use,
        # so they have a client of their own (see relay_client).
        self._relay_client = relay_client
        self._own_relay_client = relay_client is None
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
        # Relayed images are gathered for the cache within an eighth of it
        # in all, however many clients ask at once; a larger one is not kept.
        self.gathering = InFlightBytes(memory.capacity // KEEP_SHARE)
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

    def names(self, request: ImageRequest, offers: tuple[str, ...]) -> Names:
        """Where the image of ``request`` for ``offers`` (the negotiated
        formats, phizer.web.negotiate) is kept: one entry per offer set."""
        key = variant_key(request.key, offers)
        return Names(
            key,
            request.path,
            lambda: self.keys.result(request.size, key),
            lambda: self.keys.group(request.path),
        )

    async def finished(
        self, request: ImageRequest, offers: tuple[str, ...] = ()
    ) -> tuple[FinishedImage, str]:
        """The image and how it was had (see ``ReadThrough.get``)."""
        names = self.names(request, offers)
        return await self.results.get(names, lambda: self._from_worker(request, offers))

    def relays(self, request: ImageRequest) -> bool:
        """Whether the answer is an original's bytes, relayed as it arrives."""
        spec = self.config.sizes[request.size]
        return serves_untouched(spec, request.crop, self.config.settings.max_dimension)

    @property
    def relay_client(self) -> AsyncHTTPClient:
        if self._relay_client is None:
            self._relay_client = CurlAsyncHTTPClient(
                force_instance=True, max_clients=WORKER_CLIENTS
            )
        return self._relay_client

    async def relay(self, request: ImageRequest, offers: tuple[str, ...], relay: Relay) -> Head:
        """Start relaying the worker's answer to ``request``; its head.

        The worker has ``worker_timeout`` to answer; the body then takes as
        long as the client does (see ``FrontHandler``).
        """
        index = worker_index(request.filename, len(self.worker_urls))
        worker_request = HTTPRequest(
            worker_url(self.worker_urls[index], request.key, offers),
            connect_timeout=self.config.settings.origin_connect_timeout,
            request_timeout=0,  # none: a client may take its time
            follow_redirects=False,
            prepare_curl_callback=relay.attach,
        )
        with self._waiting_on(index):  # until the head: the rest is the client's pace
            relay.start(
                self._ask_worker(
                    index,
                    worker_request,
                    self.relay_client,
                    lambda: not relay.started and not relay.stopped,
                )
            )
            try:
                return await relay.head(self.config.settings.worker_timeout)
            except TimeoutError:
                raise WorkerTimeout(f"worker {index + 1} timed out") from None

    async def _from_worker(self, request: ImageRequest, offers: tuple[str, ...]) -> FinishedImage:
        index = worker_index(request.filename, len(self.worker_urls))
        worker_request = HTTPRequest(
            worker_url(self.worker_urls[index], request.key, offers),
            connect_timeout=self.config.settings.origin_connect_timeout,
            request_timeout=self.config.settings.worker_timeout,
            follow_redirects=False,
        )
        with self._waiting_on(index):
            response = await self._ask_worker(index, worker_request, self.client)
        if response.code != 200:
            message = response.body[:_MAX_ERROR_BODY].decode("utf-8", "replace").strip()
            raise error_for_status(response.code, message)
        return worker_image(response.headers, response.body, strong_etag(response.body))

    async def close(self, timeout: float) -> None:
        """Finish pending write-backs (at most ``timeout`` s), release the tiers."""
        if self.bus is not None:
            self.bus.close()
        await self.results.close(timeout)
        if self._own_relay_client and self._relay_client is not None:
            self._relay_client.close()

    @contextlib.contextmanager
    def _waiting_on(self, index: int) -> Iterator[None]:
        """A place in worker ``index``'s queue while it makes an answer."""
        if self.queued[index] >= self.config.settings.max_worker_queue:
            raise WorkerUnavailable(f"worker {index + 1} is busy")
        self.queued[index] += 1
        try:
            yield
        finally:
            self.queued[index] -= 1

    async def _ask_worker(
        self,
        index: int,
        worker_request: HTTPRequest,
        client: AsyncHTTPClient,
        may_retry: Callable[[], bool] = lambda: True,
    ) -> HTTPResponse:
        """One retry for a connection that failed at once: a worker that is
        stopping (reload, restart) may close a connection it had just
        accepted, and a GET to a worker is safe to repeat (``may_retry``:
        unless part of its answer was already passed on)."""
        for attempt in range(2):
            try:
                return await fetch(client, worker_request)
            except TransportFailure as failure:
                if failure.timed_out:
                    raise WorkerTimeout(f"worker {index + 1} timed out") from None
                if not may_retry():
                    raise WorkerUnavailable(f"worker {index + 1} broke off: {failure}") from None
                if attempt == 1:
                    log.warning("worker %d unavailable: %s", index + 1, failure)
        raise WorkerUnavailable(f"worker {index + 1} unavailable")


class FrontHandler(BaseHandler):
    SUPPORTED_METHODS = ("GET", "HEAD", "PURGE")

    def initialize(self, state: FrontState, context: HandlerContext) -> None:  # type: ignore[override]
        super().initialize(context)
        self.state = state
        self.relay: Relay | None = None

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
        if auto_format:
            # Every answer, the source-format one included, depends on Accept.
            self.set_header("Vary", "Accept")
        if self.state.relays(request):
            await self._serve_relayed(request, offers)
            return
        image, self.cache_result = await self.state.finished(request, offers)
        self._answer(image)

    def _answer(self, image: FinishedImage) -> None:
        if not self._answer_head(image):
            self.finish(image.data)

    def _answer_head(self, image: FinishedImage) -> bool:
        """The headers of ``image``; True when that was the whole answer (304)."""
        if self.cache_result in (HIT, *self.state.results.tiers.names):
            self.worker = None  # no worker was asked
        elif self.cache_result == MISS:
            self.fetch_ms, self.resize_ms = image.fetch_ms, image.resize_ms
        if image.etag:
            self.set_header("ETag", image.etag)
        self._set_max_age(image.expires)
        if self.check_etag_header():
            self.set_status(304)
            self.finish()
            return True
        self.set_header("Content-Type", image.content_type)
        return False

    async def _serve_relayed(self, request: ImageRequest, offers: tuple[str, ...]) -> None:
        """An original's bytes: from the cache when kept, else passed on from
        the worker as the client takes them (kept when small enough)."""
        state = self.state
        names = state.names(request, offers)
        found = await state.results.cached(names)
        if found is not None:
            image, self.cache_result = found
            self._answer(image)
            return
        self.cache_result = MISS
        with state.results.loading(names.group) as unpurged:
            self.relay = relay = Relay(state.gathering)
            try:
                head = await state.relay(request, offers, relay)
                kept = await self._relay_answer(head, relay)
            finally:
                relay.stop()  # whatever is left of the answer is not wanted
            if kept is not None and unpurged():
                state.results.put(names, kept)

    async def _relay_answer(self, head: Head, relay: Relay) -> FinishedImage | None:
        """Answer the client from the worker's ``head`` and body; the image,
        when its body was gathered for the cache."""
        if head.code != 200:
            message = b""
            async for batch in relay.batches():
                message += b"".join(batch)
                if len(message) >= _MAX_ERROR_BODY:
                    break
            text = message[:_MAX_ERROR_BODY].decode("utf-8", "replace").strip()
            raise error_for_status(head.code, text)
        length = head.headers.get("Content-Length", "")
        if not length.isdigit():
            # Without a length a body cut short could not be told from a whole one.
            raise error_for_status(502, f"worker {self.worker} answered without a length")
        # The bytes are not here yet: the worker's ETag for them.
        image = worker_image(head.headers, b"", head.headers.get("ETag", ""))
        if self._answer_head(image):
            return None
        self.set_header("Content-Length", length)
        if self.request.method == "HEAD":
            self.finish()
            return None
        if not await self._pass_on(relay):
            return None
        data = relay.kept()
        return None if data is None else replace(image, data=data, etag=strong_etag(data))

    async def _pass_on(self, relay: Relay) -> bool:
        """The body, as the client takes it; False when it was cut short (a
        client that takes nothing for ``client_timeout`` is let go)."""
        stall = self.state.config.settings.client_timeout
        try:
            async for batch in relay.batches():
                for chunk in batch:
                    self.write(chunk)
                await asyncio.wait_for(self.flush(), stall)
        except (StreamClosedError, TimeoutError, WorkerUnavailable, WorkerTimeout) as failure:
            if not isinstance(failure, StreamClosedError):
                reason = str(failure) or f"the client took nothing for {stall:g} s"
                log.warning("relaying %s cut short: %s", self.request.path, reason)
            self._cut_short()
            return False
        self.finish()
        return True

    def _cut_short(self) -> None:
        """End a response whose body cannot be completed: the connection is
        closed, so the client sees fewer bytes than Content-Length said."""
        try:
            self.finish()
        except HTTPOutputError:
            self.finish()  # the connection is closed now; this finishes the request

    def on_connection_close(self) -> None:
        if self.relay is not None:
            self.relay.stop()  # the client is gone: the worker's transfer too

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


def worker_image(headers: HTTPHeaders, data: bytes, etag: str) -> FinishedImage:
    """An image as its worker's answer describes it (``data``: its bytes)."""
    return FinishedImage(
        data,
        headers.get("Content-Type", "application/octet-stream"),
        etag,
        parse_ms(headers.get(FETCH_MS_HEADER)),
        parse_ms(headers.get(RESIZE_MS_HEADER)),
        parse_ms(headers.get(EXPIRES_HEADER)) or 0.0,
    )


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
