"""A worker: keeps originals and their decodes, renders one request at a time.

A request is decided before anything is fetched or decoded: a size served
untouched needs only the original's bytes; otherwise the pixels come from
the decoded cache when it can make the plan, else from the original,
decoded once for every size (kept in the decoded cache) or, for what that
decode cannot make (an animation, a tight crop), for this request alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from tornado.curl_httpclient import CurlAsyncHTTPClient
from tornado.httpclient import AsyncHTTPClient
from tornado.iostream import StreamClosedError
from tornado.web import Application

from phizer.cache.locked import LockedLRU
from phizer.cache.lru import ByteLRU
from phizer.cache.readthrough import HIT, Codec, Names, ReadThrough
from phizer.cache.remembered import Remembered
from phizer.cache.singleflight import SingleFlight
from phizer.config.loader import Config
from phizer.config.sizes import SizeSpec
from phizer.errors import (
    BadImage,
    DecodeTimeout,
    NotFound,
    PhizerError,
    SourceTooLarge,
    UnsupportedImage,
    WorkerUnavailable,
)
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
from phizer.origins.base import OVER_BUDGET, Fetched, Validators
from phizer.origins.build import build_origin_set
from phizer.origins.chain import OriginSet
from phizer.tiers.chain import open_tiers
from phizer.tiers.disk import ORIGINALS
from phizer.tiers.keys import TierKeys
from phizer.tiers.records import Envelope
from phizer.web.admin import worker_routes
from phizer.web.describe import describe_routes
from phizer.web.handler import BaseHandler, HandlerContext, log_worker_request, unroutable
from phizer.web.inflight import InFlight
from phizer.web.metrics import WorkerMetrics
from phizer.web.protocol import (
    CACHE_HEADER,
    EXPIRES_HEADER,
    FETCH_MS_HEADER,
    OFFERS_PARAM,
    RESIZE_MS_HEADER,
    entity_tag,
    parse_offers,
)
from phizer.web.purge import worker_purge_route
from phizer.web.renderer import Renderer
from phizer.web.urls import parse_request_path

log = logging.getLogger("phizer.worker")

# The worker's cache results beyond the read-through's: the decoded cache
# made the image; the original was revalidated with the origins; a copy past
# original_ttl was used (another request was revalidating, or the origins failed).
DECODED = "decoded"
# What an original itself causes (not the origins, not this worker's load):
# the same file fails the same way at every size until it changes.
REMEMBERED_FAILURES = (SourceTooLarge, UnsupportedImage, BadImage, DecodeTimeout)
REVALIDATED = "revalidated"
STALE = "stale"


@dataclass(frozen=True)
class Original:
    """An original's bytes, when they were fetched and how to ask whether they changed."""

    data: bytes
    fetched: float = 0.0  # Unix time of the fetch or the last revalidation
    etag: str | None = None
    last_modified: str | None = None
    expires: float = 0.0  # originals are revalidated, never just dropped (see stale)

    @property
    def nbytes(self) -> int:
        return len(self.data) + len(self.etag or "") + len(self.last_modified or "")

    @cached_property
    def digest(self) -> bytes:
        """Tells these bytes from any other version of the photo."""
        return hashlib.blake2b(self.data, digest_size=16).digest()

    @property
    def validators(self) -> Validators:
        return Validators(self.etag, self.last_modified)

    def stale(self, ttl: float, now: float) -> bool:
        return ttl > 0 and now - self.fetched >= ttl

    def fresh_until(self, ttl: float) -> float:
        """Until when images made from it may be kept (0: as long as it is)."""
        return self.fetched + ttl if ttl > 0 else 0.0


_ORIGINAL_MAGIC = b"PZO1"
_MAX_ORIGINAL_HEAD = 2048


def pack_original(original: Original) -> bytes:
    head = {"f": original.fetched, "e": original.etag, "m": original.last_modified}
    return _ORIGINAL_MAGIC + json.dumps(head).encode() + b"\n" + original.data


def unpack_original(payload: bytes) -> Original | None:
    if not payload.startswith(_ORIGINAL_MAGIC):
        return None
    end = payload.find(b"\n", 0, _MAX_ORIGINAL_HEAD)
    if end < 0:
        return None
    try:
        head = json.loads(payload[len(_ORIGINAL_MAGIC) : end])
        fetched, etag, modified = float(head["f"]), head["e"], head["m"]
    except (ValueError, TypeError, KeyError):
        return None
    if not all(value is None or isinstance(value, str) for value in (etag, modified)):
        return None
    return Original(payload[end + 1 :], fetched, etag, modified)


def _original(fetched: Fetched, now: float) -> Original:
    assert fetched.data is not None
    validators = fetched.validators
    return Original(fetched.data, now, validators.etag, validators.last_modified)


class WorkerState:
    """Everything a worker keeps between requests."""

    def __init__(
        self, config: Config, origins: OriginSet, clock: Callable[[], float] = time.time
    ) -> None:
        settings = config.settings
        set_pixel_limit(settings.max_source_pixels)
        jpegscale.three_eighths_works()  # probed now rather than on a first request
        self.config = config
        self.origins = origins
        self.clock = clock  # Unix time: when originals were fetched, whether they are stale
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
            Codec(pack_original, self._usable),
            clock,
        )
        self.keys = TierKeys(config)
        # One revalidation per original at a time (see original()).
        self.revalidations: SingleFlight[tuple[Original, str]] = SingleFlight()
        # Photos no origin had, and originals that failed to render, with the
        # error every size and crop of them gets meanwhile.
        self.missing: Remembered[NotFound] = Remembered()
        self.failures: Remembered[PhizerError] = Remembered()

    def _usable(self, envelope: Envelope) -> Original | None:
        original = unpack_original(envelope.payload)
        # Another host may allow larger originals; this one's limit holds.
        if original is None or not 0 < len(original.data) <= self.config.settings.max_source_bytes:
            return None
        return original

    def names(self, path: str) -> Names:
        return Names(path, path, lambda: self.keys.original(path), lambda: self.keys.group(path))

    async def original(self, path: str) -> tuple[Original, str]:
        """The original's bytes and how they were had (see ``ReadThrough.get``;
        ``revalidated`` or ``stale`` past ``original_ttl``)."""
        names = self.names(path)
        original, how = await self.originals.get(names, lambda: self._from_origins(path))
        ttl = self.config.settings.original_ttl
        if not original.stale(ttl, self.clock()):
            return original, how
        if path in self.revalidations:
            # Another request is asking the origins: this one gets the copy.
            self.metrics.stale.inc()
            return original, STALE
        (current, how), _ = await self.revalidations.run(
            path, lambda: self._revalidate(names, original)
        )
        return current, how

    async def _revalidate(self, names: Names, old: Original) -> tuple[Original, str]:
        """Ask the origins whether ``old`` is current; keep it, replace it (and
        drop what was made from it), or drop everything when it is gone."""
        path = names.key
        try:
            fetched = await self._fetch(path, old.validators)
        except NotFound:
            self.metrics.revalidations.labels("gone").inc()
            await self.purge(path)
            raise
        except PhizerError as error:
            # stale-if-error: the copy keeps being served, and asked about again.
            self.metrics.revalidations.labels("failed").inc()
            self.metrics.stale.inc()
            log.warning("revalidating %r failed (%s); serving the cached copy", path, error)
            return old, STALE
        now = self.clock()
        if fetched.data is None or fetched.data == old.data:
            self.metrics.revalidations.labels("unchanged").inc()
            current = replace(old, fetched=now)
        else:
            self.metrics.revalidations.labels("changed").inc()
            await self.purge(path)  # what was made from the old bytes goes too
            current = _original(fetched, now)
        self.originals.put(names, current)
        return current, REVALIDATED

    async def _from_origins(self, path: str) -> Original:
        return _original(await self._fetch(path), self.clock())

    async def _fetch(self, path: str, validators: Validators | None = None) -> Fetched:
        """From the origins; a photo none of them has is remembered for
        ``missing_ttl`` seconds, so a storm of requests for it costs one fetch."""
        known = self.missing.get(path, time.monotonic())
        if known is not None:
            raise known
        started = time.perf_counter()
        try:
            return await self.origins.fetch(path, validators)
        except NotFound as missing:
            missing_ttl = self.config.settings.missing_ttl
            if missing_ttl > 0:
                self.missing.put(path, time.monotonic() + missing_ttl, missing)
            raise
        finally:
            self.metrics.fetch_seconds.observe(time.perf_counter() - started)

    async def purge_answer(self, path: str) -> dict[str, Any]:
        return {"path": path, **(await self.purge(path))}

    async def purge(self, path: str) -> dict[str, int]:
        """Drop ``path``'s original and decode here, and mark its tier entries stale."""
        self.metrics.purges.inc()
        self.missing.discard(path)
        self.failures.discard(path)
        decoded = int(path in self.decoded)
        self.decoded.discard(path)
        originals = await self.originals.purge(path, lambda: self.keys.group(path))
        return {"originals": originals, "decoded": decoded}

    def from_decoded(
        self,
        path: str,
        spec: SizeSpec,
        crop: Crop | None,
        offers: tuple[str, ...],
        version: bytes | None = None,
    ) -> Rendered | None:
        """The image made from the decoded cache, when it holds this original
        (of ``version``, when given) with enough pixels for the request."""
        max_dimension = self.config.settings.max_dimension
        if serves_untouched(spec, crop, max_dimension):
            return None  # the original's bytes, never pixels
        decoded = self.decoded.get(path)
        if decoded is None:
            return None
        if version is not None and decoded.version != version:
            self.decoded.discard(path)  # made from other bytes of the photo
            return None
        plan = plan_for(decoded.full_size, spec, crop, max_dimension)
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
        version = original.digest if settings.original_ttl else None
        waited = path in self.decoded
        if waited:
            rendered = self.from_decoded(path, spec, crop, offers, version)
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
        decoded = decode_once(fresh, sizes, settings.max_dimension, version or b"")
        self.decoded.put(path, decoded)
        return self._render(path, decoded, plan, spec, offers)

    async def render_original(
        self,
        path: str,
        original: Original,
        spec: SizeSpec,
        crop: Crop | None,
        offers: tuple[str, ...],
    ) -> Rendered:
        """``from_original`` in a render thread, on the decode budget; an
        original that cannot be rendered is remembered for ``failure_ttl``."""
        try:
            return await self.renderer.run(self.from_original, path, original, spec, crop, offers)
        except REMEMBERED_FAILURES as failure:
            failure_ttl = self.config.settings.failure_ttl
            if failure_ttl > 0:
                self.failures.put(path, time.monotonic() + failure_ttl, failure)
            raise

    @contextlib.contextmanager
    def holding(self, path: str, original: Original) -> Iterator[None]:
        """``original`` counts against ``max_inflight_bytes`` while this
        request uses it (until its answer is written: it may be the bytes)."""
        in_flight = self.origins.in_flight
        if not in_flight.hold(path, len(original.data)):
            raise WorkerUnavailable(OVER_BUDGET)
        try:
            yield
        finally:
            in_flight.let_go(path)

    def _open(self, original: Original) -> FreshSource:
        output, settings = self.output, self.config.settings
        return open_original(
            original.data,
            output.animated,
            output.max_frames,
            not output.strip_metadata,
            settings.max_source_pixels,
            self.limits,
            output.auto_orient,
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
        failed = state.failures.get(request.path, time.monotonic())
        if failed is not None:
            self.cache_result = "failed"
            raise failed  # every size and crop of it, until failure_ttl passes
        fetched = started
        ttl = state.config.settings.original_ttl
        # Without original_ttl a decode is good for as long as it is kept;
        # with it, the original's freshness is checked first.
        rendered = None if ttl else state.from_decoded(request.path, spec, request.crop, offers)
        if rendered is not None:
            self.cache_result = DECODED
            await self._send(rendered, started, fetched)
            return
        original, self.cache_result = await state.original(request.path)
        fetched = time.perf_counter()
        with state.holding(request.path, original):
            if self.front_gone:
                self.cache_result = "abandoned"
                return
            if ttl:
                rendered = state.from_decoded(
                    request.path, spec, request.crop, offers, original.digest
                )
                if rendered is not None and self.cache_result == HIT:
                    self.cache_result = DECODED
            if rendered is None:
                # Decoding is where a hostile original costs: in a render
                # thread, on a budget.
                rendered = await state.render_original(
                    request.path, original, spec, request.crop, offers
                )
            if serves_untouched(spec, request.crop, state.config.settings.max_dimension):
                # The front passes the bytes on as they arrive: it needs
                # their ETag first (the one it gives any image).
                self.set_header("ETag", entity_tag(original.digest))
            await self._send(rendered, started, fetched, original.fresh_until(ttl))

    async def _send(
        self, rendered: Rendered, started: float, fetched: float, expires: float = 0.0
    ) -> None:
        """The answer, with its timings; returns once it is written out."""
        self.fetch_ms = 1000 * (fetched - started)
        self.resize_ms = 1000 * (time.perf_counter() - fetched)
        self.state.metrics.resize_seconds.observe(self.resize_ms / 1000)
        self.set_header("Content-Type", rendered.content_type)
        self.set_header(FETCH_MS_HEADER, f"{self.fetch_ms:.1f}")
        self.set_header(RESIZE_MS_HEADER, f"{self.resize_ms:.1f}")
        self.set_header(CACHE_HEADER, self.cache_result)
        if expires:
            self.set_header(EXPIRES_HEADER, f"{expires:.3f}")
        with contextlib.suppress(StreamClosedError):  # the front gave up: nothing to do
            await self.finish(rendered.data)


def make_origin_set(config: Config, client: AsyncHTTPClient | None = None) -> OriginSet:
    settings = config.settings
    if client is None:
        client = CurlAsyncHTTPClient(
            force_instance=True, max_clients=settings.max_inflight_requests
        )
    return build_origin_set(config, client)


def make_worker_app(config: Config, state: WorkerState | None = None) -> Application:
    state = state or WorkerState(config, make_origin_set(config))
    context = HandlerContext(state.in_flight, state.metrics)
    return Application(
        [
            *worker_routes(state.metrics, context),
            worker_purge_route(state.purge_answer, context),
            *describe_routes(state, context),
            (r"/.*", WorkerHandler, {"state": state, "context": context}),
        ],
        log_function=log_worker_request,
        compress_response=False,
        **unroutable(context),
    )
