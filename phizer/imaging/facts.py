"""What an original is: format, pixel size, colour profile, orientation, frames.

Read from the header (a GIF's frames are counted by skipping through
them); nothing is decoded, so describing an original costs no more than
identifying it. Values come from a hostile file: anything unreadable is
reported as absent rather than failing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image, ImageCms

from phizer.imaging.animation import frame_count
from phizer.imaging.colour import parse_profile
from phizer.imaging.decode import (
    DECODE_ERRORS,
    DEFAULT_LIMITS,
    has_alpha,
    open_image,
    orientation,
)

# Frames counted at most: the count is shown, not used, and a hostile GIF
# could claim millions.
MAX_COUNTED_FRAMES = 10_000
# EXIF orientation values as the EXIF specification describes them.
ORIENTATIONS = {
    1: "normal",
    2: "mirrored horizontally",
    3: "rotated 180°",
    4: "mirrored vertically",
    5: "mirrored horizontally, rotated 270° clockwise",
    6: "rotated 90° clockwise",
    7: "mirrored horizontally, rotated 90° clockwise",
    8: "rotated 270° clockwise",
}
# Orientations whose upright image has width and height swapped.
_SWAPPING = (5, 6, 7, 8)


@dataclass(frozen=True)
class OriginalFacts:
    """``width`` x ``height`` as stored; ``upright`` after the EXIF orientation."""

    image_format: str
    width: int
    height: int
    nbytes: int
    mode: str
    has_alpha: bool
    orientation: int
    frames: int | None  # None: the frames could not be counted
    icc_bytes: int = 0
    icc_description: str | None = None

    @property
    def upright(self) -> tuple[int, int]:
        if self.orientation in _SWAPPING:
            return self.height, self.width
        return self.width, self.height

    @property
    def orientation_name(self) -> str:
        return ORIENTATIONS.get(self.orientation, "normal")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OriginalFacts:
        """The worker's JSON back into facts; ``ValueError`` when it is not that."""
        try:
            facts = cls(**data)
        except TypeError as err:
            raise ValueError(f"not a description of an original: {err}") from None
        if not (isinstance(facts.width, int) and isinstance(facts.height, int)):
            raise ValueError("width and height must be integers")
        if facts.width < 1 or facts.height < 1:
            raise ValueError("an original has at least one pixel")
        return facts


def read_facts(data: bytes, max_pixels: int) -> OriginalFacts:
    """Describe ``data``; raises the pipeline's errors for what it would refuse."""
    image = open_image(data, max_pixels)
    profile = image.info.get("icc_profile")
    profile = profile if isinstance(profile, bytes) and profile else None
    return OriginalFacts(
        image_format=image.format or "",
        width=image.width,
        height=image.height,
        nbytes=len(data),
        mode=image.mode,
        has_alpha=has_alpha(image),
        orientation=orientation(image),
        frames=_frames(image, data),
        icc_bytes=len(profile or b""),
        icc_description=_profile_description(profile),
    )


def _frames(image: Image.Image, data: bytes) -> int | None:
    try:
        return frame_count(image, MAX_COUNTED_FRAMES, data, DEFAULT_LIMITS.max_chunks)
    except DECODE_ERRORS:
        return None


def _profile_description(data: bytes | None) -> str | None:
    profile = parse_profile(data)
    if profile is None:
        return None
    try:
        description = ImageCms.getProfileDescription(profile)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None
    return description.strip() or None
