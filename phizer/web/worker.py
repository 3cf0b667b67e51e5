"""A worker: keeps originals and their decodes, renders one request at a time.

A request is decided before anything is fetched or decoded: a size served
untouched needs only the original's bytes; otherwise the pixels come from
the decoded cache when it can make the plan, else from the original,
decoded once for every size (kept in the decoded cache) or, for what that
decode cannot make (an animation, a tight crop), for this request alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tornado.curl_httpclient import CurlAsyncHTTPClient
from tornado.httpclient import AsyncHTTPClient
from tornado.web import Application

from phizer.cache.locked import LockedLRU
from phizer.cache.lru import ByteLRU
from phizer.cache.readthrough import Codec, ReadThrough
from phizer.config.loader import Config
from phizer.config.sizes import SizeSpec
from phizer.errors import NotFound
from phizer.imaging import jpegscale
from phizer.imaging.decode import DecodeLimits, set_pixel_limit
from phizer.imaging.decoded import DecodedOriginal, decode_once, decode_once_covers
from phizer.imaging.geometry import Crop, ResizePlan
from phizer.imaging.pipeline import (
    OutputOptions,
    Rendered,
    plan_for,
    render_from,
    serves_untouched,
    untouched,
)
from phizer.imaging.source import FreshSource, PixelSource, open_original
from phizer.origins.sources import OriginSet, build_origins
from phizer.tiers.chain import open_tiers
from phizer.tiers.disk import ORIGINALS
from phizer.tiers.keys import TierKeys
from phizer.web.admin import worker_routes
from phizer.web.handler import BaseHandler, HandlerContext, log_worker_request
from phizer.web.inflight import InFlight
from phizer.web.metrics import WorkerMetrics
from phizer.web.protocol import (
    CACHE_HEADER,
    FETCH_MS_HEADER,
    OFFERS_PARAM,
    RESIZE_MS_HEADER,
    parse_offers,
)
from phizer.web.renderer import Renderer
from phizer.web.urls import parse_request_path

# The worker's cache result when the decoded cache made the image.
DECODED = "decoded"


@dataclass(frozen=True)
class Original:
    data: bytes

    @property
    def nbytes(self) -> int:
        return len(self.data)


class WorkerState:
    """Everything a worker keeps between requests."""

    def __init__(self, config: Config, origins: OriginSet) -> None:
        settings = config.settings
        set_pixel_limit(settings.max_source_pixels)
        jpegscale.three_eighths_works()  # probed now rather than on a first request
        self.config = config
        self.origins = origins
        self.in_flight = InFlight()
        self.output = OutputOptions.from_settings(settings)
        self.limits = DecodeLimits(settings.max_jpeg_scans, settings.max_chunks)
        self.renderer = Renderer(settings.decode_timeout)
        memory: ByteLRU[Original] = ByteLRU(
            0 if settings.disable_cache else settings.client_cache_size
        )
        # Originals decoded once, kept with the levels every size is made from.
        self.decoded: ByteLRU[DecodedOriginal] = LockedLRU(
            0 if settings.disable_cache else settings.decoded_cache_size
        )
        self.metrics = WorkerMetrics({"originals": memory, "decoded": self.decoded})
        self.metrics.watch_in_flight(self.in_flight)
        self.originals = ReadThrough(
            memory,
            open_tiers(config, ORIGINALS, self.metrics.tiers),
            Codec(lambda original: original.data, self._usable),
        )
        self.keys = TierKeys(config)

    def _usable(self, data: bytes) -> Original | None:
        # Another host may allow larger originals; this one's limit holds.
        return Original(data) if 0 < len(data) <= self.config.settings.max_source_bytes else None

    async def original(self, path: str) -> tuple[Original, str]:
        """The original's bytes and how they were had (see ``ReadThrough.get``)."""
        return await self.originals.get(
            path, lambda: self._from_origins(path), lambda: self.keys.original(path)
        )

    async def _from_origins(self, path: str) -> Original:
        started = time.perf_counter()
        try:
            return Original(await self.origins.fetch(path))
        finally:
            self.metrics.fetch_seconds.observe(time.perf_counter() - started)

    def from_decoded(
        self, path: str, spec: SizeSpec, crop: Crop | None, offers: tuple[str, ...]
    ) -> Rendered | None:
        """The image made from the decoded cache, when it holds this original
        with enough pixels for the request."""
        decoded = self.decoded.get(path)
        if decoded is None:
            return None
        plan = plan_for(decoded.full_size, spec, crop, self.config.settings.max_dimension)
        if not decoded.can_make(plan):
            return None
        return self._render(path, decoded, plan, spec, offers)

    def from_original(
        self,
        path: str,
        original: Original,
        spec: SizeSpec,
        crop: Crop | None,
        offers: tuple[str, ...],
    ) -> Rendered:
        settings = self.config.settings
        if serves_untouched(spec, crop, settings.max_dimension):
            return untouched(original.data, settings.max_source_pixels, self.limits)
        # Requests that waited on the same fetch find the first one's decode.
        waited = path in self.decoded
        if waited:
            rendered = self.from_decoded(path, spec, crop, offers)
            if rendered is not None:
                return rendered
        fresh = self._open(original)
        plan = plan_for(fresh.facts.size, spec, crop, settings.max_dimension)
        sizes = self.config.sizes.values()
        keep = (
            not waited
            and self.decoded.capacity > 0
            and fresh.facts.frames == 1
            and decode_once_covers(fresh.facts, plan, sizes, settings.max_dimension)
        )
        if not keep:
            return self._render(path, fresh, plan, spec, offers)
        decoded = decode_once(fresh, sizes, settings.max_dimension)
        self.decoded.put(path, decoded)
        return self._render(path, decoded, plan, spec, offers)

    def _open(self, original: Original) -> FreshSource:
        output, settings = self.output, self.config.settings
        return open_original(
            original.data,
            output.animated,
            output.max_frames,
            not output.strip_metadata,
            settings.max_source_pixels,
            self.limits,
        )

    def _render(
        self,
        path: str,
        source: PixelSource,
        plan: ResizePlan,
        spec: SizeSpec,
        offers: tuple[str, ...],
    ) -> Rendered:
        settings = self.config.settings
        rendered = render_from(
            source, plan, spec, self.output, max_pixels=settings.max_source_pixels, offers=offers
        )
        if isinstance(source, DecodedOriginal):
            self._recount(path, source)
        return rendered

    def _recount(self, path: str, decoded: DecodedOriginal) -> None:
        """Put ``decoded`` again when it grew (a level made, the decode let go)."""
        if path in self.decoded and self.decoded.cost(path) != self.decoded.cost_of(path, decoded):
            self.decoded.put(path, decoded)

    async def close(self, timeout: float) -> None:
        """Finish pending write-backs (at most ``timeout`` s), release the tiers."""
        await self.originals.close(timeout)
        self.renderer.close()


class WorkerHandler(BaseHandler):
    def initialize(self, state: WorkerState, context: HandlerContext) -> None:  # type: ignore[override]
        super().initialize(context)
        self.state = state
        self.front_gone = False

    def on_connection_close(self) -> None:
        # The front gave up on this request (worker_timeout): a resize now
        # would only delay the requests queued behind it.
        self.front_gone = True

    async def serve(self) -> None:
        request = parse_request_path(self.request_path())
        state = self.state
        spec = state.config.sizes.get(request.size)
        if spec is None:
            raise NotFound("unknown size")
        started = time.perf_counter()
        # The front's negotiated formats; only those this config offers count.
        offers = parse_offers(
            self.get_query_arguments(OFFERS_PARAM), state.config.settings.auto_format
        )
        if self.front_gone:
            self.cache_result = "abandoned"
            return
        fetched = started
        rendered = state.from_decoded(request.path, spec, request.crop, offers)
        if rendered is not None:
            self.cache_result = DECODED
        else:
            original, self.cache_result = await state.original(request.path)
            fetched = time.perf_counter()
            if self.front_gone:
                self.cache_result = "abandoned"
                return
            # Decoding is where a hostile original costs: in a render thread, on a budget.
            rendered = await state.renderer.run(
                state.from_original, request.path, original, spec, request.crop, offers
            )
        self.fetch_ms = 1000 * (fetched - started)
        self.resize_ms = 1000 * (time.perf_counter() - fetched)
        state.metrics.resize_seconds.observe(self.resize_ms / 1000)
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
    context = HandlerContext(state.in_flight, state.metrics)
    return Application(
        [
            *worker_routes(state.metrics, context),
            (r"/.*", WorkerHandler, {"state": state, "context": context}),
        ],
        log_function=log_worker_request,
        compress_response=False,
    )
