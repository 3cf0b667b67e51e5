"""What the preview page shows, as plain data, and the pure rules that derive it.

``preview`` fills these from real answers of the front and the workers;
``preview_page`` turns them into HTML. Nothing here does I/O.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from phizer.config.sizes import SizeSpec
from phizer.imaging.facts import OriginalFacts
from phizer.imaging.geometry import Box, Crop, exceeds, plan_crop_only, plan_resize
from phizer.imaging.pipeline import OutputOptions, output_quality

# Formats whose encoder takes a quality; PNG and GIF are lossless.
LOSSY_FORMATS = ("JPEG", "WEBP", "AVIF")
# The multiplication sign between a width and a height.
TIMES = "\u00d7"
# How the page names Pillow's formats.
FORMAT_NAMES = {"JPEG": "JPEG", "WEBP": "WebP", "AVIF": "AVIF", "PNG": "PNG", "GIF": "GIF"}


@dataclass(frozen=True)
class Variant:
    """One image as a client would receive it, and what it cost.

    ``width``, ``height`` and ``image_format`` are read from ``data``
    itself, so the page shows what the bytes are, not what was asked for.
    """

    label: str
    data: bytes = b""
    content_type: str = ""
    width: int = 0
    height: int = 0
    image_format: str = ""
    quality: int | None = None
    total_ms: float | None = None  # the whole request, as the front saw it
    made_ms: float | None = None  # decode, resize and encode in the worker
    cache: str | None = None  # the front's cache result, for served images
    error: str | None = None

    @property
    def nbytes(self) -> int:
        return len(self.data)

    @property
    def format_name(self) -> str:
        return FORMAT_NAMES.get(self.image_format, self.image_format)


@dataclass(frozen=True)
class SizePreview:
    spec: SizeSpec
    served: Variant
    formats: tuple[Variant, ...]  # JPEG, WebP, AVIF; empty when the size serves the original
    kept: Box | None  # the kept region in percent of the upright original; None: all of it
    unresized: bool  # a side at or above max_dimension: the original's scale is kept


@dataclass(frozen=True)
class Preview:
    path: str  # decoded
    crop: Crop | None
    view: str
    facts: OriginalFacts
    original_cache: str
    thumbnail: bytes
    thumbnail_type: str
    served_offers: tuple[str, ...]  # the formats the served column's client accepts
    sizes: tuple[SizePreview, ...]


def read_variant(label: str, data: bytes, content_type: str) -> Variant:
    """A ``Variant`` whose dimensions and format come from ``data``'s header
    (timings and quality are the caller's to add, with ``dataclasses.replace``)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            image_format = image.format or ""
    except Exception:  # any unreadable answer is shown as such, never raised
        return Variant(label, data, content_type, error="not a readable image")
    return Variant(label, data, content_type, width, height, image_format)


def quality_of(image_format: str, spec: SizeSpec, options: OutputOptions) -> int | None:
    """The encoder quality phizer uses for ``spec`` in ``image_format``; None if lossless."""
    if image_format not in LOSSY_FORMATS:
        return None
    return output_quality(image_format, spec, options)


def kept_region(
    facts: OriginalFacts, spec: SizeSpec, crop: Crop | None, max_dimension: int
) -> Box | None:
    """The region of the upright original that ``spec`` (and ``crop``) keep,
    as (left, top, width, height) percentages; None when it is the whole image."""
    width, height = facts.upright
    if exceeds(spec, max_dimension):
        plan = plan_crop_only(width, height, crop)
    else:
        plan = plan_resize(width, height, spec, crop)
    left, top, right, bottom = plan.box
    if (left, top, right, bottom) == (0, 0, width, height):
        return None
    return (
        100 * left / width,
        100 * top / height,
        100 * (right - left) / width,
        100 * (bottom - top) / height,
    )


def geometry_text(spec: SizeSpec) -> str:
    """The size as its ``[sizes]`` line says it, options that differ from the defaults included."""
    words = [f"{spec.width}{TIMES}{spec.height}", spec.constraint.value]
    if spec.quality is not None:
        words.append(f"quality={spec.quality}")
    if spec.output_format is not None:
        words.append(f"format={spec.output_format.lower()}")
    if not spec.upscale:
        words.append("upscale=false")
    if spec.progressive is not None:
        words.append(f"progressive={str(spec.progressive).lower()}")
    if spec.background is not None:
        words.append("background=#{:02x}{:02x}{:02x}".format(*spec.background))
    return " ".join(words)
