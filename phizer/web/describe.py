"""The worker's side of the preview page: an original's facts, a size in a given format.

Only the front asks (loopback peers only), and only for ``/_preview``.
Both routes take the canonical image path (``ImageRequest.key``) after
their prefix, parsed as strictly as the image route parses it. Nothing
made here is cached: a preview is rare and must show what phizer makes.
"""

from __future__ import annotations

import base64
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from phizer.config.sizes import SizeSpec
from phizer.errors import BadRequest, NotFound
from phizer.imaging.facts import read_facts
from phizer.imaging.pipeline import OutputOptions, render
from phizer.web.admin import LOOPBACK, AdminHandler
from phizer.web.handler import HandlerContext
from phizer.web.urls import ImageRequest, parse_request_path

if TYPE_CHECKING:
    from phizer.web.worker import WorkerState

DESCRIBE_PATH = "/_describe"
RENDER_PATH = "/_render"
FORMAT_PARAM = "format"
# Formats a size can be previewed in, by the name the query uses.
PREVIEW_FORMATS = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}
RENDER_MS_HEADER = "X-Phizer-Render-Ms"
# The small upright original the page draws kept regions on: WebP holds
# alpha and every current browser shows it.
THUMBNAIL = SizeSpec("preview", 480, 480, upscale=False)
THUMBNAIL_OPTIONS = OutputOptions(image_quality=80)
THUMBNAIL_OFFERS = ("WEBP",)


class _WorkerPreviewHandler(AdminHandler):
    prefix = ""

    def initialize(self, state: WorkerState, context: HandlerContext) -> None:  # type: ignore[override]
        super().initialize(context)
        self.state = state

    def image_request(self) -> ImageRequest:
        self.require_peer(LOOPBACK)
        return parse_request_path(self.request_path().removeprefix(self.prefix))


class DescribeHandler(_WorkerPreviewHandler):
    """JSON: the original's facts, how the worker got it, and a small upright copy."""

    prefix = DESCRIBE_PATH

    async def serve(self) -> None:
        request = self.image_request()
        original, self.cache_result = await self.state.original(request.path)
        max_pixels = self.state.config.settings.max_source_pixels
        facts = read_facts(original.data, max_pixels)
        thumbnail = render(
            original.data, THUMBNAIL, None, THUMBNAIL_OPTIONS, True, max_pixels, THUMBNAIL_OFFERS
        )
        answer: dict[str, Any] = {
            "facts": facts.to_json(),
            "cache": self.cache_result,
            "thumbnail": base64.b64encode(thumbnail.data).decode("ascii"),
            "thumbnail_type": thumbnail.content_type,
        }
        self.write_json(answer)


class RenderHandler(_WorkerPreviewHandler):
    """One size in the format the query names, made as the image route would make it."""

    prefix = RENDER_PATH

    async def serve(self) -> None:
        request = self.image_request()
        spec = self.state.config.sizes.get(request.size)
        if spec is None:
            raise NotFound("unknown size")
        name = PREVIEW_FORMATS.get(self.get_query_argument(FORMAT_PARAM, "").lower())
        if name is None:
            raise BadRequest(f"{FORMAT_PARAM} must be one of {', '.join(PREVIEW_FORMATS)}")
        original, self.cache_result = await self.state.original(request.path)
        settings = self.state.config.settings
        started = time.perf_counter()
        rendered = render(
            original.data,
            replace(spec, output_format=name),
            request.crop,
            self.state.output,
            max_dimension=settings.max_dimension,
            max_pixels=settings.max_source_pixels,
        )
        self.resize_ms = 1000 * (time.perf_counter() - started)
        self.set_header("Content-Type", rendered.content_type)
        self.set_header(RENDER_MS_HEADER, f"{self.resize_ms:.1f}")
        self.finish(rendered.data)


def describe_routes(
    state: WorkerState, context: HandlerContext
) -> list[tuple[str, type, dict[str, Any]]]:
    """Routes to put before the worker's catch-all."""
    given = {"state": state, "context": context}
    return [
        (DESCRIBE_PATH + "/.*", DescribeHandler, given),
        (RENDER_PATH + "/.*", RenderHandler, given),
    ]
