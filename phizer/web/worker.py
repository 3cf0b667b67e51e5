"""A worker: fetches originals, keeps them in an LRU, resizes synchronously."""

from __future__ import annotations

import time
from dataclasses import dataclass

from tornado.curl_httpclient import CurlAsyncHTTPClient
from tornado.httpclient import AsyncHTTPClient
from tornado.web import Application

from phizer.cache.lru import ByteLRU
from phizer.cache.singleflight import SingleFlight
from phizer.config.loader import Config
from phizer.config.sizes import SizeSpec
from phizer.errors import NotFound
from phizer.imaging import jpegscale
from phizer.imaging.geometry import exceeds
from phizer.imaging.pipeline import (
    DecodedOriginal,
    OutputOptions,
    Rendered,
    decode_original,
    render,
    render_decoded,
)
from phizer.origins.sources import OriginSet, build_origins
from phizer.tiers.chain import open_tiers
from phizer.tiers.disk import ORIGINALS
from phizer.tiers.keys import TierKeys
from phizer.web.admin import WorkerMetrics, worker_routes
from phizer.web.describe import describe_routes
from phizer.web.handler import BaseHandler, InFlight, log_worker_request
from phizer.web.negotiate import OFFERS_PARAM, parse_offers
from phizer.web.urls import Crop, parse_request_path

FETCH_MS_HEADER = "X-Phizer-Fetch-Ms"
RESIZE_MS_HEADER = "X-Phizer-Resize-Ms"
# How the worker got the original (hit, miss, coalesced): for operators
# asking a worker directly; the front keeps its own cache result.
CACHE_HEADER = "X-Phizer-Cache"


@dataclass(frozen=True)
class Original:
    data: bytes
    tier: str | None = None  # the cache tier it came from (disk, shared), if any

    @property
    def nbytes(self) -> int:
        return len(self.data)


class WorkerState:
    """Everything a worker keeps between requests."""

    def __init__(self, config: Config, origins: OriginSet) -> None:
        settings = config.settings
        jpegscale.three_eighths_works()  # probed now rather than on a first request
        self.config = config
        self.origins = origins
        self.originals: ByteLRU[Original] = ByteLRU(
            0 if settings.disable_cache else settings.client_cache_size
        )
        self.fetches: SingleFlight[Original] = SingleFlight()
        # Originals decoded once, kept at the levels every size is made from
        # (see imaging.decode_original).
        self.decoded: ByteLRU[DecodedOriginal] = ByteLRU(
            0 if settings.disable_cache else settings.decoded_cache_size
        )
        self.output = OutputOptions.from_settings(settings)
        self.metrics = WorkerMetrics({"originals": self.originals, "decoded": self.decoded})
        self.keys = TierKeys(config)
        self.tiers = open_tiers(config, ORIGINALS, self.metrics.tiers)

    def from_decoded(
        self,
        path: str,
        decoded: DecodedOriginal,
        spec: SizeSpec,
        crop: Crop | None,
        resize: bool,
        offers: tuple[str, ...],
    ) -> Rendered | None:
        if not resize and crop is None:
            return None  # the original's bytes are served untouched
        max_pixels = self.config.settings.max_source_pixels
        levels = len(decoded.levels)
        rendered = render_decoded(decoded, spec, crop, self.output, resize, max_pixels, offers)
        if len(decoded.levels) != levels and path in self.decoded:
            self.decoded.put(path, decoded)  # it gained a level: count it again
        return rendered

    def from_original(
        self,
        path: str,
        original: Original,
        spec: SizeSpec,
        crop: Crop | None,
        offers: tuple[str, ...],
        decode: bool = True,
    ) -> Rendered:
        """Decode once into the decoded cache when it is on, else render directly.

        ``decode`` false: the decoded cache already holds this original but
        at too small a scale for this request, which is made from full size.
        """
        settings = self.config.settings
        resize = not exceeds(spec, settings.max_dimension)
        if decode and (resize or crop is not None):
            # Requests that waited on the same fetch find the first one's decode
            # (their first look, before the fetch, already counted the miss).
            cached = self.decoded.get(path) if path in self.decoded else None
            decoded = cached or self._decode(path, original)
            if decoded is not None:
                rendered = self.from_decoded(path, decoded, spec, crop, resize, offers)
                if rendered is not None:
                    return rendered
        return render(
            original.data,
            spec,
            crop,
            self.output,
            resize=resize,
            max_pixels=settings.max_source_pixels,
            offers=offers,
        )

    def _decode(self, path: str, original: Original) -> DecodedOriginal | None:
        if self.decoded.capacity == 0:
            return None
        settings = self.config.settings
        decoded = decode_original(
            original.data,
            self.config.sizes.values(),
            self.output,
            settings.max_dimension,
            settings.max_source_pixels,
        )
        if decoded is not None:
            self.decoded.put(path, decoded)
        return decoded

    async def original(self, path: str) -> tuple[Original, str]:
        """The original's bytes and how we got them: hit, disk, shared, miss or coalesced."""
        cached = self.originals.get(path)
        if cached is not None:
            return cached, "hit"
        original, joined = await self.fetches.run(path, lambda: self._fetch(path))
        return original, "coalesced" if joined else (original.tier or "miss")

    async def _fetch(self, path: str) -> Original:
        """From the disk or shared tier, else from the origins (then written
        back to the tiers in the background)."""
        tier_key = self.keys.original(path) if self.tiers else ""
        found = await self.tiers.get(tier_key, self._usable) if self.tiers else None
        if found is not None:
            original = Original(found.value, found.tier)
            self.originals.put(path, original)
            return original
        original = await self._from_origins(path)
        if self.tiers:
            self.tiers.put_later(tier_key, original.data)
        return original

    def _usable(self, data: bytes) -> bytes | None:
        # Another host may allow larger originals; this one's limit holds.
        return data if 0 < len(data) <= self.config.settings.max_source_bytes else None

    async def close(self, timeout: float) -> None:
        """Finish pending write-backs (at most ``timeout`` s), release the tiers."""
        await self.tiers.close(timeout)

    async def _from_origins(self, path: str) -> Original:
        started = time.perf_counter()
        try:
            original = Original(await self.origins.fetch(path))
        finally:
            self.metrics.fetch_seconds.observe(time.perf_counter() - started)
        self.originals.put(path, original)
        return original


class WorkerHandler(BaseHandler):
    def initialize(self, state: WorkerState) -> None:  # type: ignore[override]
        super().initialize()
        self.state = state
        self.front_gone = False

    def on_connection_close(self) -> None:
        self.front_gone = True

    def abandoned(self) -> bool:
        """The front gave up on this request (worker_timeout): a resize now
        would only delay the requests queued behind it."""
        stream = getattr(self.request.connection, "stream", None)
        return self.front_gone or (stream is not None and stream.closed())

    async def serve(self) -> None:
        request = parse_request_path(self.request_path())
        spec = self.state.config.sizes.get(request.size)
        if spec is None:
            raise NotFound("unknown size")
        started = time.perf_counter()
        # The front's negotiated formats; only those this config offers count.
        offers = parse_offers(
            self.get_query_arguments(OFFERS_PARAM), self.state.config.settings.auto_format
        )
        state = self.state
        resize = not exceeds(spec, state.config.settings.max_dimension)
        rendered = None
        fetched = started
        if self.abandoned():
            self.cache_result = "abandoned"
            return
        decoded = state.decoded.get(request.path)
        if decoded is not None:
            rendered = state.from_decoded(request.path, decoded, spec, request.crop, resize, offers)
            self.cache_result = "decoded"
        if rendered is None:
            original, self.cache_result = await state.original(request.path)
            fetched = time.perf_counter()
            if self.abandoned():
                self.cache_result = "abandoned"
                return
            rendered = state.from_original(
                request.path, original, spec, request.crop, offers, decode=decoded is None
            )
        self.fetch_ms = 1000 * (fetched - started)
        self.resize_ms = 1000 * (time.perf_counter() - fetched)
        self.state.metrics.resize_seconds.observe(self.resize_ms / 1000)
        self.set_header("Content-Type", rendered.content_type)
        self.set_header(FETCH_MS_HEADER, f"{self.fetch_ms:.1f}")
        self.set_header(RESIZE_MS_HEADER, f"{self.resize_ms:.1f}")
        self.set_header(CACHE_HEADER, self.cache_result)
        self.finish(rendered.data)


def make_origin_set(config: Config, client: AsyncHTTPClient | None = None) -> OriginSet:
    settings = config.settings
    if client is None:
        client = CurlAsyncHTTPClient(
            force_instance=True, max_clients=settings.max_inflight_requests
        )
    origins = build_origins(
        config.origins,
        client,
        settings.origin_connect_timeout,
        settings.origin_timeout,
        settings.max_source_bytes,
    )
    if config.master is not None:
        return OriginSet(origins[0], origins[1:])
    return OriginSet(None, origins)


def make_worker_app(config: Config, state: WorkerState | None = None) -> Application:
    state = state or WorkerState(config, make_origin_set(config))
    return Application(
        [
            *worker_routes(state.metrics),
            *describe_routes(state),
            (r"/.*", WorkerHandler, {"state": state}),
        ],
        log_function=log_worker_request,
        metrics=state.metrics,
        in_flight=InFlight(),
        state=state,
        compress_response=False,
    )
