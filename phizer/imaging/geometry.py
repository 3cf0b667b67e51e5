"""Pure geometry: which region of the source becomes which output size.

All functions work on plain numbers, so they are tested without images.
Coordinates are those of the upright source (after EXIF orientation).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from phizer.config.sizes import Constraint, SizeSpec

Box = tuple[float, float, float, float]
# Crop points are thousandths of the source's width and height.
CROP_SCALE = 1000


@dataclass(frozen=True)
class Crop:
    """Crop points in thousandths of the source width and height."""

    left: int
    top: int
    right: int
    bottom: int

    def to_segments(self) -> str:
        return f"{self.left}x{self.top}/{self.right}x{self.bottom}"


@dataclass(frozen=True)
class ResizePlan:
    """Scale the source region ``box`` (left, top, right, bottom) to ``size``."""

    box: Box
    size: tuple[int, int]

    @property
    def scale(self) -> float:
        """The larger of the two axis scale factors from source to output."""
        left, top, right, bottom = self.box
        return max(self.size[0] / (right - left), self.size[1] / (bottom - top))


def crop_box(width: int, height: int, crop: Crop | None) -> tuple[int, int, int, int]:
    """Crop points (thousandths) to a pixel box that is at least 1x1."""
    if crop is None:
        return 0, 0, width, height
    left = width * crop.left // CROP_SCALE
    top = height * crop.top // CROP_SCALE
    right = max(width * crop.right // CROP_SCALE, left + 1)
    bottom = max(height * crop.bottom // CROP_SCALE, top + 1)
    return min(left, width - 1), min(top, height - 1), min(right, width), min(bottom, height)


def plan_resize(width: int, height: int, spec: SizeSpec, crop: Crop | None = None) -> ResizePlan:
    """Where the crop points, then the size's constraint, take a source image.

    With ``spec.upscale`` false the output is never larger than the source
    region: where the constraint would scale up, the source's scale is kept
    and only its cropping applies.
    """
    left, top, right, bottom = crop_box(width, height, crop)
    src_w, src_h = right - left, bottom - top
    target_w, target_h = spec.width, spec.height
    if spec.constraint is Constraint.SQUARE:
        side = min(src_w, src_h)
        x = left + (src_w - side) / 2
        y = top + (src_h - side) / 2
        out = target_w if spec.upscale else min(target_w, side)
        return ResizePlan((x, y, x + side, y + side), (out, out))
    if spec.constraint is Constraint.PORTRAIT:
        target_h = target_h if spec.upscale else min(target_h, src_h)
        out_w, keep = _fix_one_side(src_h, target_h, src_w, target_w)
        x = left + (src_w - keep) / 2
        return ResizePlan((x, top, x + keep, bottom), (out_w, target_h))
    if spec.constraint is Constraint.LANDSCAPE:
        target_w = target_w if spec.upscale else min(target_w, src_w)
        out_h, keep = _fix_one_side(src_w, target_w, src_h, target_h)
        y = top + (src_h - keep) / 2
        return ResizePlan((left, y, right, y + keep), (target_w, out_h))
    # max: fit inside W x H keeping the aspect ratio (small images grow).
    if not spec.upscale and src_w <= target_w and src_h <= target_h:
        return ResizePlan((left, top, right, bottom), (src_w, src_h))
    if target_w * src_h <= target_h * src_w:
        size = (target_w, max(1, src_h * target_w // src_w))
    else:
        size = (max(1, src_w * target_h // src_h), target_h)
    return ResizePlan((left, top, right, bottom), size)


def _fix_one_side(fixed: int, fixed_target: int, other: int, other_max: int) -> tuple[int, float]:
    """Scale so one side becomes ``fixed_target``; if the other side then
    exceeds ``other_max``, it is cropped (centred) down to it.

    Returns the other side's output length and how much of the source's
    other side to keep.
    """
    scaled = max(1, other * fixed_target // fixed)
    if scaled <= other_max:
        return scaled, other
    return other_max, other_max * fixed / fixed_target


def plan_crop_only(width: int, height: int, crop: Crop | None) -> ResizePlan:
    """The crop points alone, at the source's own scale."""
    left, top, right, bottom = crop_box(width, height, crop)
    return ResizePlan((left, top, right, bottom), (right - left, bottom - top))


def draft_size(width: int, height: int, plan: ResizePlan, headroom: float = 2.0) -> tuple[int, int]:
    """Smallest full-image size to decode so the box keeps ``headroom`` x the output.

    JPEG decoders can scale by 1/2, 1/4 or 1/8 while decoding; asking for
    this size lets them do so without the final LANCZOS step ever working
    from fewer than ``headroom`` source pixels per output pixel.
    """
    factor = min(1.0, plan.scale * headroom)
    return max(1, math.ceil(width * factor)), max(1, math.ceil(height * factor))


def working_size(
    width: int,
    height: int,
    specs: Iterable[SizeSpec],
    max_dimension: int,
    headroom: float = 2.0,
) -> tuple[int, int]:
    """The smallest size of a ``width`` x ``height`` image from which every
    configured size (uncropped) is still made from ``headroom`` x its output
    pixels; at most the full size."""
    factor = 0.0
    for spec in specs:
        if not exceeds(spec, max_dimension):
            factor = max(factor, plan_resize(width, height, spec).scale * headroom)
    factor = min(1.0, factor) if factor > 0 else 1.0
    return max(1, math.ceil(width * factor)), max(1, math.ceil(height * factor))


def has_headroom(
    plan: ResizePlan, full: tuple[int, int], reduced: tuple[int, int], headroom: float = 2.0
) -> bool:
    """Whether ``plan`` (on the ``full`` image) can be made from the image
    reduced to ``reduced`` with ``headroom`` x its output pixels to spare."""
    if reduced == full:
        return True
    left, top, right, bottom = scale_box(plan.box, full, reduced)
    # One pixel of slack for the rounding up in working_size.
    return (
        right - left >= headroom * plan.size[0] - 1 and bottom - top >= headroom * plan.size[1] - 1
    )


def level_sizes(plans: Iterable[ResizePlan], full: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """The output sizes of the whole-image ``plans`` that are smaller than the
    ``full`` source, largest first, each once: the levels a decoded original
    may be kept at."""
    sizes = {plan.size for plan in plans if is_reduction(plan.size, full) and is_whole(plan, full)}
    return tuple(sorted(sizes, key=lambda size: (size[0] * size[1], size), reverse=True))


def is_reduction(size: tuple[int, int], full: tuple[int, int]) -> bool:
    """Whether ``size`` is no larger than ``full`` on either side, and not ``full`` itself."""
    return size[0] <= full[0] and size[1] <= full[1] and size != full


def is_whole(plan: ResizePlan, full: tuple[int, int]) -> bool:
    """Whether ``plan`` takes the whole ``full`` image (no crop)."""
    return plan.box == (0, 0, full[0], full[1])


def pick_level(
    levels: Iterable[tuple[int, int]], plan: ResizePlan, full: tuple[int, int]
) -> int | None:
    """Index of the smallest level ``plan`` can be made from: one that is its
    whole-image output already, or one with 2x headroom; None if none is."""
    best: int | None = None
    best_area = 0
    for index, size in enumerate(levels):
        exact = size == plan.size and is_whole(plan, full)
        if exact or has_headroom(plan, full, size):
            area = size[0] * size[1]
            if best is None or area < best_area:
                best, best_area = index, area
    return best


def scale_box(box: Box, from_size: tuple[int, int], to_size: tuple[int, int]) -> Box:
    """Map a box on an image of ``from_size`` onto the same image at ``to_size``."""
    fx = to_size[0] / from_size[0]
    fy = to_size[1] / from_size[1]
    left, top, right, bottom = box
    return (
        left * fx,
        top * fy,
        min(right * fx, to_size[0]),
        min(bottom * fy, to_size[1]),
    )


def exceeds(spec: SizeSpec, max_dimension: int) -> bool:
    """Sizes at or above ``max_dimension`` serve the original unresized."""
    return spec.width >= max_dimension or spec.height >= max_dimension
