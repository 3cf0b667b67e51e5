"""The front's operator pages: ``/_preview/<path>`` and ``/_sizes`` (``admin_allow`` only).

The preview asks phizer for every configured size the way a client
would: the "as served" image comes from the front's own serving path
(its caches, the worker, the negotiated format), each JPEG, WebP and AVIF
version from the worker that holds the original (``describe``), which
also reports the original's facts. Requests go one at a time so each
time shown is that request's alone. Dimensions and formats are read
from the returned bytes, never assumed.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tornado.httpclient import HTTPRequest, HTTPResponse

from phizer.config.sizes import SizeSpec
from phizer.errors import (
    BadRequest,
    NotFound,
    PhizerError,
    WorkerTimeout,
    WorkerUnavailable,
    error_for_status,
)
from phizer.imaging.facts import OriginalFacts
from phizer.imaging.geometry import Crop, exceeds
from phizer.imaging.pipeline import OutputOptions
from phizer.transport import TransportFailure, fetch
from phizer.web.admin import AdminHandler
from phizer.web.describe import (
    DESCRIBE_PATH,
    FORMAT_PARAM,
    PREVIEW_FORMATS,
    RENDER_MS_HEADER,
    RENDER_PATH,
)
from phizer.web.handler import HandlerContext
from phizer.web.preview_model import (
    FORMAT_NAMES,
    Preview,
    SizePreview,
    Variant,
    geometry_text,
    kept_region,
    quality_of,
    read_variant,
)
from phizer.web.preview_page import VIEW_NAMES, content_security_policy, render_page
from phizer.web.protocol import worker_index
from phizer.web.urls import ImageRequest, parse_request_path

if TYPE_CHECKING:
    from phizer.config.loader import Config, Settings
    from phizer.web.front import FrontState

PREVIEW_PATH = "/_preview"
SIZES_PATH = "/_sizes"
VIEW_PARAM = "format"
CROP_PARAM = "crop"
# Stands in for a size code where only the image path matters.
_ANY_SIZE = "preview"
_CROP_QUERY = re.compile(r"^[+-]?\d+x[+-]?\d+/[+-]?\d+x[+-]?\d+$")
_MAX_ERROR_BODY = 200


class BadWorkerAnswer(PhizerError):
    status = 502
    message = "the worker's answer could not be read"


# --- what was asked ----------------------------------------------------------------


def parse_target(raw_path: str, crop_query: str | None) -> ImageRequest:
    """The image a ``/_preview/...`` path names, with the crop of its path
    (``/_preview/tlxXtly/brxXbry/<path>``) or of ``?crop=``, not both."""
    rest = raw_path.removeprefix(PREVIEW_PATH)
    if not rest.startswith("/") or rest == "/":
        raise NotFound(f"expected {PREVIEW_PATH}/<path>")
    target = parse_request_path(f"/{_ANY_SIZE}{rest}")
    if crop_query:
        if target.crop is not None:
            raise BadRequest("crop given both in the path and as ?crop=")
        target = replace(target, crop=parse_crop(crop_query))
    return target


def parse_crop(text: str) -> Crop:
    """``tlxXtly/brxXbry`` in thousandths, checked as the image URLs' crop is."""
    if not _CROP_QUERY.match(text):
        raise BadRequest("crop must be tlxXtly/brxXbry, e.g. 100x0/900x1000")
    crop = parse_request_path(f"/{_ANY_SIZE}/{text}/x").crop
    if crop is None:  # the pattern above only lets crop points through
        raise BadRequest("crop must be tlxXtly/brxXbry, e.g. 100x0/900x1000")
    return crop


def parse_view(value: str) -> str:
    view = value.lower()
    if view not in VIEW_NAMES:
        raise BadRequest(f"{VIEW_PARAM} must be one of {', '.join(VIEW_NAMES)}")
    return view


# --- asking phizer -----------------------------------------------------------------


class PreviewMaker:
    """Everything one page needs, asked of the front's state and one worker."""

    def __init__(self, state: FrontState, target: ImageRequest) -> None:
        self.state = state
        self.target = target
        settings = state.config.settings
        self.settings = settings
        self.options = OutputOptions.from_settings(settings)
        index = worker_index(target.filename, len(state.worker_urls))
        self.worker_url = state.worker_urls[index]

    async def make(self, view: str) -> Preview:
        description = await self._describe()
        facts = _facts(description)
        sizes = []
        for spec in self.state.config.sizes.values():
            sizes.append(await self._size(spec, facts))
        return Preview(
            path=self.target.path,
            crop=self.target.crop,
            view=view,
            facts=facts,
            original_cache=str(description.get("cache", "")),
            thumbnail=_thumbnail(description),
            thumbnail_type=str(description.get("thumbnail_type", "")),
            served_offers=self.settings.auto_format,
            sizes=tuple(sizes),
        )

    async def _size(self, spec: SizeSpec, facts: OriginalFacts) -> SizePreview:
        request = ImageRequest(spec.code, self.target.crop, self.target.path)
        unresized = exceeds(spec, self.settings.max_dimension)
        untouched = unresized and request.crop is None  # the original's own bytes
        served = await self._served(request, spec, untouched)
        formats: tuple[Variant, ...] = ()
        if not untouched:
            formats = tuple(
                [await self._in_format(request, spec, name) for name in PREVIEW_FORMATS]
            )
        kept = kept_region(facts, spec, request.crop, self.settings.max_dimension)
        return SizePreview(spec, served, formats, kept, unresized)

    async def _served(self, request: ImageRequest, spec: SizeSpec, untouched: bool) -> Variant:
        started = time.perf_counter()
        try:
            image, cache = await self.state.finished(request, self.settings.auto_format)
        except PhizerError as err:
            return Variant("served", error=str(err))
        total_ms = 1000 * (time.perf_counter() - started)
        variant = read_variant("served", image.data, image.content_type)
        quality = None if untouched else quality_of(variant.image_format, spec, self.options)
        made_ms = image.resize_ms if cache == "miss" else None
        return replace(variant, quality=quality, total_ms=total_ms, made_ms=made_ms, cache=cache)

    async def _in_format(self, request: ImageRequest, spec: SizeSpec, name: str) -> Variant:
        label = FORMAT_NAMES[PREVIEW_FORMATS[name]]
        url = f"{self.worker_url}{RENDER_PATH}{request.key}?{FORMAT_PARAM}={name}"
        started = time.perf_counter()
        try:
            response = await self._ask(url)
        except PhizerError as err:
            return Variant(label, error=str(err))
        total_ms = 1000 * (time.perf_counter() - started)
        if response.code != 200:
            return Variant(label, error=_error_text(response))
        variant = read_variant(label, response.body, response.headers.get("Content-Type", ""))
        return replace(
            variant,
            quality=quality_of(variant.image_format, spec, self.options),
            total_ms=total_ms,
            made_ms=_float(response.headers.get(RENDER_MS_HEADER)),
        )

    async def _describe(self) -> dict[str, Any]:
        response = await self._ask(self.worker_url + DESCRIBE_PATH + self.target.key)
        if response.code != 200:
            raise error_for_status(response.code, _error_text(response))
        try:
            answer = json.loads(response.body)
        except ValueError:
            raise BadWorkerAnswer() from None
        if not isinstance(answer, dict):
            raise BadWorkerAnswer()
        return answer

    async def _ask(self, url: str) -> HTTPResponse:
        request = HTTPRequest(
            url,
            connect_timeout=self.settings.origin_connect_timeout,
            request_timeout=self.settings.worker_timeout,
            follow_redirects=False,
        )
        try:
            return await fetch(self.state.client, request)
        except TransportFailure as failure:
            if failure.timed_out:
                raise WorkerTimeout("the worker timed out") from None
            raise WorkerUnavailable("the worker is unavailable") from None


def _facts(description: dict[str, Any]) -> OriginalFacts:
    facts = description.get("facts")
    if not isinstance(facts, dict):
        raise BadWorkerAnswer()
    try:
        return OriginalFacts.from_json(facts)
    except ValueError:
        raise BadWorkerAnswer() from None


def _thumbnail(description: dict[str, Any]) -> bytes:
    try:
        return base64.b64decode(str(description.get("thumbnail", "")), validate=True)
    except ValueError:
        raise BadWorkerAnswer() from None


def _error_text(response: HTTPResponse) -> str:
    body = response.body or b""
    return body[:_MAX_ERROR_BODY].decode("utf-8", "replace").strip() or f"{response.code}"


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


# --- the handlers ------------------------------------------------------------------


class _FrontPageHandler(AdminHandler):
    def initialize(self, state: FrontState, context: HandlerContext) -> None:  # type: ignore[override]
        super().initialize(context)
        self.state = state


class PreviewHandler(_FrontPageHandler):
    async def serve(self) -> None:
        self.require_peer(self.state.config.settings.admin_allow)
        view = parse_view(self.get_query_argument(VIEW_PARAM, "served"))
        target = parse_target(self.request_path(), self.get_query_argument(CROP_PARAM, None))
        preview = await PreviewMaker(self.state, target).make(view)
        nonce = secrets.token_urlsafe(18)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", content_security_policy(nonce))
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.finish(render_page(preview, nonce))


class SizesHandler(_FrontPageHandler):
    """The configured sizes as JSON, in the file's order."""

    async def serve(self) -> None:
        config = self.state.config
        self.require_peer(config.settings.admin_allow)
        self.write_json(sizes_json(config))


def sizes_json(config: Config) -> dict[str, Any]:
    settings = config.settings
    return {
        "image_quality": settings.image_quality,
        "auto_format": [name.lower() for name in settings.auto_format],
        "max_dimension": settings.max_dimension,
        "sizes": [_size_json(spec, settings) for spec in config.sizes.values()],
    }


def _size_json(spec: SizeSpec, settings: Settings) -> dict[str, Any]:
    background = spec.background or settings.canvas_color
    return {
        "code": spec.code,
        "width": spec.width,
        "height": spec.height,
        "constraint": spec.constraint.value,
        "geometry": geometry_text(spec),
        "quality": spec.quality if spec.quality is not None else settings.image_quality,
        "format": spec.output_format.lower() if spec.output_format else None,
        "upscale": spec.upscale,
        "progressive": settings.progressive if spec.progressive is None else spec.progressive,
        "background": "#{:02x}{:02x}{:02x}".format(*background),
        "unresized": exceeds(spec, settings.max_dimension),
    }


def preview_routes(
    state: FrontState, context: HandlerContext
) -> list[tuple[str, type, dict[str, Any]]]:
    """Routes to put before the front's catch-all."""
    given = {"state": state, "context": context}
    return [(PREVIEW_PATH + "/.*", PreviewHandler, given), (SIZES_PATH, SizesHandler, given)]
