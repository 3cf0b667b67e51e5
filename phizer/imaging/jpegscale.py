"""JPEG decoding at 3/8 scale, between the 1/2 and 1/4 that ``Image.draft`` offers.

libjpeg scales by M/8 (M = 1..8) while it decodes: the inverse DCT is
done at M x M per block. Pillow's ``draft`` picks 1/1, 1/2, 1/4 or 1/8
and hands its divisor to libjpeg as ``scale_denom``; a divisor of 3 gets
3/8. For a 4000-pixel-wide photo and a 640-pixel size (decoded at no
less than 1280) that is a 1500-pixel decode instead of a 2000-pixel one:
about 44% fewer pixels to convert, hold and resize.

Pillow sizes its line buffer from the image size set here, so that size
must be exactly what libjpeg writes. Before the first use a probe decodes
a JPEG one pixel wide (any scale writes one pixel per line of it, so a
library that scaled otherwise could not overrun anything) and checks that
its rows came out at 3/8; if not, ``draft`` keeps to Pillow's own scales.
"""

from __future__ import annotations

import functools
import io

from PIL import Image, ImageFile

THREE_EIGHTHS = 3  # Pillow's divisor that libjpeg turns into 3/8
_PROBE_HEIGHT = 64
_PROBE_TOLERANCE = 12  # grey levels; at 1/2 scale the last rows are ~60 off


def scaled_length(length: int, eighths: int) -> int:
    """libjpeg's output length at ``eighths``/8 scale (rounded up)."""
    return (length * eighths + 7) // 8


def draft(image: ImageFile.ImageFile, wanted: tuple[int, int]) -> None:
    """``image.draft(None, wanted)``, or 3/8 scale where Pillow would decode
    at 1/2 and 3/8 still gives at least ``wanted``."""
    width, height = image.size
    reduced = (scaled_length(width, THREE_EIGHTHS), scaled_length(height, THREE_EIGHTHS))
    if (
        min(wanted) > 0
        and min(width // wanted[0], height // wanted[1]) in (2, 3)  # Pillow's pick: 1/2
        and reduced[0] >= wanted[0]
        and reduced[1] >= wanted[1]
        and three_eighths_works()
        and _scale(image, reduced, THREE_EIGHTHS)
    ):
        return
    image.draft(None, wanted)


def _scale(image: ImageFile.ImageFile, reduced: tuple[int, int], divisor: int) -> bool:
    """Set an unloaded JPEG to decode at ``reduced`` with Pillow's ``divisor``
    (as ``draft`` does for 1/2)."""
    if image.format != "JPEG" or len(image.tile) != 1 or image.decoderconfig:
        return False
    tile = image.tile[0]
    if tile[0] != "jpeg" or tile[1] != (0, 0, *image.size) or not hasattr(tile, "_replace"):
        return False
    image.tile = [tile._replace(extents=(0, 0, *reduced))]
    image._size = reduced
    image.decoderconfig = (divisor, 0)
    return True


@functools.cache
def three_eighths_works() -> bool:
    """Whether this Pillow and libjpeg decode at 3/8 as ``draft`` expects."""
    return rows_come_at_three_eighths(THREE_EIGHTHS)


def rows_come_at_three_eighths(divisor: int) -> bool:
    """Decode a one-pixel-wide gradient with Pillow's ``divisor`` into 3/8 of
    its rows; True when they are the gradient's rows at 3/8 scale."""
    column = Image.linear_gradient("L").resize((1, _PROBE_HEIGHT))  # black to white
    data = io.BytesIO()
    column.save(data, "JPEG", quality=100)
    image = Image.open(data)
    reduced = (1, scaled_length(_PROBE_HEIGHT, THREE_EIGHTHS))
    if not _scale(image, reduced, divisor):
        return False
    try:
        image.load()
    except (OSError, ValueError, SyntaxError):
        return False
    # The size is the one just set; only the rows' content tells the scale.
    got = image.tobytes()
    want = column.resize(reduced, Image.Resampling.BOX).tobytes()
    return max(abs(a - b) for a, b in zip(got, want, strict=True)) <= _PROBE_TOLERANCE
