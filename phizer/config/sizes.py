"""Size codes from the ``[sizes]`` section: ``code = W x H [constraint] [k=v, ...]``."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from phizer.config.values import parse_bool, parse_color, parse_int

SIZE_CODE = re.compile(r"^[a-z0-9]{1,32}$")
_DIMENSIONS = re.compile(r"^\s*(?P<w>\d{1,6})\s*(?:[x,*]\s*(?P<h>\d{1,6}))?(?P<rest>.*)$", re.I)
_OPTION = re.compile(r"(?P<key>[a-z_]+)\s*=\s*(?P<value>[^\s,]+)", re.I)
MAX_SIDE = 100_000


class SkippedSize(ValueError):
    """A line the 2012 phizer skipped (its URLs answered 404): phizer skips
    it too, with a warning, instead of refusing to start."""


class Constraint(enum.StrEnum):
    MAX = "max"
    SQUARE = "square"
    PORTRAIT = "portrait"
    LANDSCAPE = "landscape"


# format= values and the Pillow format each names.
OUTPUT_FORMATS = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF"}


@dataclass(frozen=True)
class SizeSpec:
    """One predefined output size.

    Every option left ``None`` falls back to the ``[properties]`` setting
    (``quality`` to ``image_quality``, ``progressive``, ``background`` to
    ``canvas_color``); ``output_format`` ``None`` keeps the source's format.
    """

    code: str
    width: int
    height: int
    constraint: Constraint = Constraint.MAX
    quality: int | None = None
    output_format: str | None = None
    upscale: bool = True
    progressive: bool | None = None
    background: tuple[int, int, int] | None = None


def parse_size_spec(code: str, value: str) -> tuple[SizeSpec, list[str]]:
    """Parse one ``[sizes]`` line; returns the spec and warnings for ignored options.

    Raises ``SkippedSize`` for what the 2012 phizer skipped (a bad code,
    dimensions or constraint, or junk), ``ValueError`` for a bad option.
    """
    if not SIZE_CODE.match(code):
        raise SkippedSize("size codes are 1-32 letters and digits")
    match = _DIMENSIONS.match(value)
    if not match:
        raise SkippedSize("expected W x H [max|square|portrait|landscape] [key=value, ...]")
    width = int(match["w"])
    height = int(match["h"]) if match["h"] else width
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise SkippedSize(f"width and height must be between 1 and {MAX_SIDE}")
    rest = match["rest"]
    options = {m["key"].lower(): m["value"] for m in _OPTION.finditer(rest)}
    words = _OPTION.sub(" ", rest).replace(",", " ").split()
    if len(words) > 1:
        raise SkippedSize(f"unexpected {' '.join(words[1:])!r}")
    constraint = _parse_constraint(words[0] if words else "max")
    if constraint is Constraint.PORTRAIT and width > height:
        raise SkippedSize("portrait needs W <= H")
    if constraint is Constraint.LANDSCAPE and width < height:
        raise SkippedSize("landscape needs W >= H")
    if constraint is Constraint.SQUARE:
        width = height = max(width, height)
    quality = None
    if "quality" in options:
        quality = parse_int(options.pop("quality"), 1, 100)
    output_format = None
    if "format" in options:
        name = options.pop("format").lower()
        if name not in OUTPUT_FORMATS:
            raise ValueError(f"format={name}: expected jpeg, png, webp or avif")
        output_format = OUTPUT_FORMATS[name]
    upscale = parse_bool(options.pop("upscale")) if "upscale" in options else True
    progressive = parse_bool(options.pop("progressive")) if "progressive" in options else None
    background = parse_color(options.pop("background")) if "background" in options else None
    warnings = [f"ignoring unknown size option {key!r}" for key in options]
    spec = SizeSpec(
        code, width, height, constraint, quality, output_format, upscale, progressive, background
    )
    return spec, warnings


def _parse_constraint(word: str) -> Constraint:
    try:
        return Constraint(word.lower())
    except ValueError:
        raise SkippedSize(
            f"unknown constraint {word!r} (max, square, portrait or landscape)"
        ) from None
