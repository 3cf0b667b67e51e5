"""Pixel sources: what the pipeline resamples from.

A pixel source knows its original's facts (format, upright size,
transparency, colour profile, metadata, frames) and makes the resized
pixels for a plan. ``FreshSource`` decodes the original's bytes for one
plan; ``phizer.imaging.decoded.DecodedOriginal`` keeps a decode (and the
levels made from it) for every size of a photo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from PIL import Image, ImageFile

from phizer.imaging.animation import Animation, decode_animation, frame_count
from phizer.imaging.decode import (
    DEFAULT_LIMITS,
    DEFAULT_MAX_PIXELS,
    TRANSPOSE,
    DecodeLimits,
    decode,
    decoding,
    has_alpha,
    image_format,
    open_image,
    orientation,
    upright_size,
)
from phizer.imaging.geometry import ResizePlan, draft_size, scale_box
from phizer.imaging.metadata import Metadata, read_metadata

# Same-looking result as a plain LANCZOS resize, several times faster.
REDUCING_GAP = 3.0
LANCZOS = Image.Resampling.LANCZOS


@dataclass(frozen=True)
class Facts:
    """What the original's header says, read once before anything is decoded."""

    format: str
    size: tuple[int, int]  # upright, at full resolution
    orientation: int  # EXIF, 1-8; already applied to ``size``
    has_alpha: bool
    frames: int  # frames to serve: 1 unless animations are served animated
    icc_profile: bytes | None
    metadata: Metadata  # kept for output (empty when metadata is stripped)

    @property
    def nbytes(self) -> int:
        """The bytes kept for output beside the pixels."""
        return len(self.icc_profile or b"") + self.metadata.nbytes


class PixelSource(Protocol):
    facts: Facts

    def can_make(self, plan: ResizePlan) -> bool:
        """Whether ``plan`` can be made from what this source holds."""
        ...

    def pixels(self, plan: ResizePlan, animated: bool) -> Image.Image | Animation:
        """The resized pixels of ``plan`` (every frame when ``animated``)."""
        ...


class FreshSource:
    """An original opened from its bytes, decoded for one plan at the
    smallest scale that keeps 2x headroom for the final LANCZOS step."""

    def __init__(self, image: ImageFile.ImageFile, facts: Facts) -> None:
        self.image = image
        self.facts = facts

    def can_make(self, plan: ResizePlan) -> bool:
        return True  # the full-resolution original is at hand

    def pixels(self, plan: ResizePlan, animated: bool) -> Image.Image | Animation:
        if animated:
            return self._animation(plan)
        full = self.facts.size
        decoded = decode(self.image, draft_size(*full, plan), self.facts.orientation)
        box = scale_box(plan.box, full, decoded.size)
        with decoding():
            return decoded.resize(plan.size, LANCZOS, box=box, reducing_gap=REDUCING_GAP)

    def _animation(self, plan: ResizePlan) -> Animation:
        transpose = TRANSPOSE.get(self.facts.orientation)

        def prepare(frame: Image.Image) -> Image.Image:
            if transpose is not None:
                frame = frame.transpose(transpose)
            return frame.resize(plan.size, LANCZOS, box=plan.box, reducing_gap=REDUCING_GAP)

        with decoding():
            return decode_animation(self.image, self.facts.frames, prepare)


def open_original(
    data: bytes,
    animated: bool,
    max_frames: int,
    keep_metadata: bool,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    limits: DecodeLimits = DEFAULT_LIMITS,
    auto_orient: bool = True,
) -> FreshSource:
    """Identify ``data`` from its header (nothing decoded yet) and read its facts.
    Without ``auto_orient`` the stored pixels are served as they are (the
    EXIF orientation is ignored, as the 2012 phizer did)."""
    image = open_image(data, max_pixels, limits)
    frames = 1
    if animated:
        with decoding():
            frames = frame_count(image, max_frames, data, limits.max_chunks)
    turn = orientation(image) if auto_orient else 1
    facts = Facts(
        format=image_format(image),
        size=upright_size(image.size, turn),
        orientation=turn,
        has_alpha=has_alpha(image),
        frames=frames,
        icc_profile=image.info.get("icc_profile"),
        metadata=read_metadata(image) if keep_metadata else Metadata(),
    )
    return FreshSource(image, facts)
