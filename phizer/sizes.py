"""Size codes from the ``[sizes]`` section: ``code = W x H [constraint] [k=v, ...]``."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from phizer.values import parse_int

SIZE_CODE = re.compile(r"^[a-z0-9]{1,32}$")
_DIMENSIONS = re.compile(r"^\s*(?P<w>\d{1,6})\s*(?:[x,*]\s*(?P<h>\d{1,6}))?(?P<rest>.*)$", re.I)
_OPTION = re.compile(r"(?P<key>[a-z_]+)\s*=\s*(?P<value>[^\s,]+)", re.I)
MAX_SIDE = 100_000


class Constraint(enum.StrEnum):
    MAX = "max"
    SQUARE = "square"
    PORTRAIT = "portrait"
    LANDSCAPE = "landscape"


@dataclass(frozen=True)
class SizeSpec:
    """One predefined output size; ``quality`` overrides ``image_quality``."""

    code: str
    width: int
    height: int
    constraint: Constraint = Constraint.MAX
    quality: int | None = None


def parse_size_spec(code: str, value: str) -> tuple[SizeSpec, list[str]]:
    """Parse one ``[sizes]`` line; returns the spec and warnings for ignored options.

    Raises ``ValueError`` with a reason when the line cannot be used.
    """
    if not SIZE_CODE.match(code):
        raise ValueError("size codes are 1-32 letters and digits")
    match = _DIMENSIONS.match(value)
    if not match:
        raise ValueError("expected W x H [max|square|portrait|landscape] [key=value, ...]")
    width = int(match["w"])
    height = int(match["h"]) if match["h"] else width
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise ValueError(f"width and height must be between 1 and {MAX_SIDE}")
    rest = match["rest"]
    options = {m["key"].lower(): m["value"] for m in _OPTION.finditer(rest)}
    words = _OPTION.sub(" ", rest).replace(",", " ").split()
    if len(words) > 1:
        raise ValueError(f"unexpected {' '.join(words[1:])!r}")
    constraint = _parse_constraint(words[0] if words else "max")
    if constraint is Constraint.PORTRAIT and width > height:
        raise ValueError("portrait needs W <= H")
    if constraint is Constraint.LANDSCAPE and width < height:
        raise ValueError("landscape needs W >= H")
    if constraint is Constraint.SQUARE:
        width = height = max(width, height)
    quality = None
    if "quality" in options:
        quality = parse_int(options.pop("quality"), 1, 100)
    warnings = [f"ignoring unknown size option {key!r}" for key in options]
    return SizeSpec(code, width, height, constraint, quality), warnings


def _parse_constraint(word: str) -> Constraint:
    try:
        return Constraint(word.lower())
    except ValueError:
        raise ValueError(
            f"unknown constraint {word!r} (max, square, portrait or landscape)"
        ) from None
