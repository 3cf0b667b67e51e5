"""Default qualities per output format, on the JPEG scale operators know.

``image_quality`` and a size's ``quality=`` are JPEG qualities. WebP and
AVIF reach the same SSIM at other settings, so unless ``webp_quality`` or
``avif_quality`` is set, the JPEG quality is mapped through a table
measured on real photos by ``bench/calibrate.py`` (see bench/FIDELITY.md).
"""

from __future__ import annotations

import bisect

# JPEG quality -> the lowest WebP and AVIF qualities whose mean SSIM (20
# photos at 320 and 1024 px, AVIF at phizer.encoding.AVIF_SPEED) is at least
# that JPEG quality's; each came out smaller in bytes. Interpolated between
# rows, scaled down below the first. WebP never reaches JPEG 100's SSIM, so
# that row asks for WebP's best.
EQUIVALENT_QUALITY: tuple[tuple[int, int, int], ...] = (
    (10, 1, 12),
    (20, 15, 30),
    (30, 29, 40),
    (40, 39, 45),
    (50, 48, 49),
    (60, 59, 52),
    (70, 73, 56),
    (75, 77, 60),
    (80, 81, 67),
    (85, 85, 70),
    (90, 89, 80),
    (95, 96, 90),
    (100, 100, 100),
)


def quality_for(image_format: str, jpeg_quality: int) -> int:
    """The quality to give ``image_format``'s encoder for ``jpeg_quality``."""
    column = {"WEBP": 1, "AVIF": 2}.get(image_format)
    if column is None:
        return jpeg_quality
    rows = EQUIVALENT_QUALITY
    keys = [row[0] for row in rows]
    if jpeg_quality <= keys[0]:
        return _clamp(rows[0][column] * jpeg_quality / keys[0])
    at = bisect.bisect_left(keys, jpeg_quality)
    if at >= len(rows):
        return rows[-1][column]
    low, high = rows[at - 1], rows[at]
    if high[0] == jpeg_quality:
        return high[column]
    share = (jpeg_quality - low[0]) / (high[0] - low[0])
    return _clamp(low[column] + share * (high[column] - low[column]))


def _clamp(value: float) -> int:
    return max(1, min(100, round(value)))
