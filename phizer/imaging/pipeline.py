"""The one render pipeline: plan, pixel source, resample, colour, encode.

A request is decided before anything is decoded: ``serves_untouched``
(a size at or above ``max_dimension`` without crop points gets the
original's bytes), else a ``ResizePlan`` on the original's upright size,
made from a pixel source (``phizer.imaging.source``: a fresh decode, or a
kept decode and its levels). Pure functions over bytes and Pillow images;
nothing here knows about HTTP.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from typing import Any

from PIL import Image

from phizer.config.sizes import SizeSpec
from phizer.errors import SourceTooLarge
from phizer.imaging.animation import Animation
from phizer.imaging.colour import output_colour
from phizer.imaging.decode import (
    DEFAULT_LIMITS,
    DEFAULT_MAX_PIXELS,
    DecodeLimits,
    image_format,
    open_image,
)
from phizer.imaging.encoding import EncodeOptions, encode
from phizer.imaging.formats import ANIMATED_FORMATS, CONTENT_TYPES, choose_format
from phizer.imaging.geometry import Crop, ResizePlan, exceeds, plan_crop_only, plan_resize
from phizer.imaging.metadata import Metadata
from phizer.imaging.qualities import quality_for
from phizer.imaging.source import PixelSource, open_original

__all__ = [
    "OutputOptions",
    "Rendered",
    "plan_for",
    "render",
    "render_from",
    "serves_untouched",
    "untouched",
]


@dataclass(frozen=True)
class OutputOptions:
    """The ``[properties]`` settings that shape every output, by the same names."""

    image_quality: int = 95
    canvas_color: tuple[int, int, int] = (255, 255, 255)
    keep_icc: bool = True
    strip_metadata: bool = True
    animated: bool = False
    max_frames: int = 100
    progressive: bool = False
    webp_quality: int | None = None
    avif_quality: int | None = None
    auto_orient: bool = True

    @classmethod
    def from_settings(cls, settings: Any) -> OutputOptions:
        return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class Rendered:
    data: bytes
    content_type: str


def serves_untouched(spec: SizeSpec, crop: Crop | None, max_dimension: int) -> bool:
    """Sizes at or above ``max_dimension`` without crop points send the
    original's bytes, metadata and all."""
    return crop is None and exceeds(spec, max_dimension)


def plan_for(
    size: tuple[int, int], spec: SizeSpec, crop: Crop | None, max_dimension: int
) -> ResizePlan:
    """Where the request takes an upright ``size`` original: the size's
    geometry, or only the crop points at the source's scale for sizes at or
    above ``max_dimension``."""
    if exceeds(spec, max_dimension):
        return plan_crop_only(*size, crop)
    return plan_resize(*size, spec, crop)


def untouched(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, limits: DecodeLimits = DEFAULT_LIMITS
) -> Rendered:
    """The original's bytes as they are, once its header says it is an image we serve."""
    image = open_image(data, max_pixels, limits)
    return Rendered(data, CONTENT_TYPES[image_format(image)])


def render_from(
    source: PixelSource,
    plan: ResizePlan,
    spec: SizeSpec,
    options: OutputOptions,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    offers: tuple[str, ...] = (),
) -> Rendered:
    """Make one output from ``source``. ``offers`` are the formats the
    client accepts, best first."""
    facts = source.facts
    output_format = choose_format(
        facts.format, spec.output_format, offers, facts.frames > 1, facts.has_alpha
    )
    frames = facts.frames if output_format in ANIMATED_FORMATS else 1
    check_pixels(facts.size, plan.size, frames, max_pixels)
    pixels = source.pixels(plan, frames > 1)
    return _finish(pixels, facts.icc_profile, facts.metadata, output_format, spec, options)


def render(
    data: bytes,
    spec: SizeSpec,
    crop: Crop | None,
    options: OutputOptions,
    max_dimension: int = 3000,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    offers: tuple[str, ...] = (),
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> Rendered:
    """The pipeline from an original's bytes, decoded for this request alone."""
    if serves_untouched(spec, crop, max_dimension):
        return untouched(data, max_pixels, limits)
    source = open_original(
        data,
        options.animated,
        options.max_frames,
        not options.strip_metadata,
        max_pixels,
        limits,
        options.auto_orient,
    )
    plan = plan_for(source.facts.size, spec, crop, max_dimension)
    return render_from(source, plan, spec, options, max_pixels, offers)


def check_pixels(
    source: tuple[int, int], output: tuple[int, int], frames: int, max_pixels: int
) -> None:
    """Refuse work over ``max_pixels``: every decoded (or written) frame counts."""
    largest = max(source[0] * source[1], output[0] * output[1])
    if largest * frames > max_pixels:
        raise SourceTooLarge(
            f"{frames} frame(s) of up to {largest} pixels are more than {max_pixels}"
        )


def _finish(
    pixels: Image.Image | Animation,
    icc_profile: bytes | None,
    metadata: Metadata,
    output_format: str,
    spec: SizeSpec,
    options: OutputOptions,
) -> Rendered:
    """Colour and encode the resized pixels."""
    pixels, profile = _colour(pixels, icc_profile, options.keep_icc, output_format)
    settings = EncodeOptions(
        quality=output_quality(output_format, spec, options),
        background=spec.background or options.canvas_color,
        progressive=options.progressive if spec.progressive is None else spec.progressive,
        icc_profile=profile,
        metadata=metadata,
    )
    return Rendered(encode(pixels, output_format, settings), CONTENT_TYPES[output_format])


def output_quality(image_format: str, spec: SizeSpec, options: OutputOptions) -> int:
    """The encoder quality: a size's ``quality=`` (JPEG scale) first, then the
    format's own setting, then ``image_quality`` mapped to the format's scale."""
    if spec.quality is None:
        own = {"WEBP": options.webp_quality, "AVIF": options.avif_quality}.get(image_format)
        if own is not None:
            return own
    return quality_for(image_format, spec.quality or options.image_quality)


def _colour(
    pixels: Image.Image | Animation, icc_profile: bytes | None, keep_icc: bool, image_format: str
) -> tuple[Image.Image | Animation, bytes | None]:
    if isinstance(pixels, Animation):
        frames, profile = output_colour(pixels.frames, icc_profile, keep_icc, image_format)
        return replace(pixels, frames=frames), profile
    [still], profile = output_colour([pixels], icc_profile, keep_icc, image_format)
    return still, profile
