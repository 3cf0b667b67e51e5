"""A decoded original kept for every size of a photo, with its levels."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property

from PIL import Image, ImageFile

from phizer.config.sizes import SizeSpec
from phizer.imaging.animation import Animation
from phizer.imaging.colour import without_large_profile
from phizer.imaging.decode import decode, decoding
from phizer.imaging.geometry import (
    ResizePlan,
    exceeds,
    is_reduction,
    is_whole,
    level_sizes,
    pick_level,
    plan_resize,
    scale_box,
    working_size,
)
from phizer.imaging.source import LANCZOS, REDUCING_GAP, Facts, FreshSource

# Modes whose whole-image outputs are kept as levels (no alpha, see level()).
LEVEL_MODES = ("L", "RGB", "CMYK")


@dataclass(eq=False)
class DecodedOriginal:
    """An original decoded once, upright, at the smallest DCT scale from
    which every configured size is made by LANCZOS with 2x headroom, and the
    levels made from it so far, so no size needs another decode.

    A level is a configured size's whole-image output. It is kept once
    made: a request for that size is then only encoded, and smaller sizes
    are made from it (a LANCZOS cascade over small images) instead of from
    the large decode. The decode itself (``base``) is let go once the levels
    serve every configured size.
    """

    facts: Facts
    base: Image.Image | None
    # The configured sizes' plans on this image (sizes at max_dimension, served
    # untouched, left out): what the levels must be able to make.
    configured: tuple[ResizePlan, ...] = ()
    levels: dict[tuple[int, int], Image.Image] = field(default_factory=dict)
    # Which bytes of the original it was decoded from (opaque to it).
    version: bytes = b""

    @property
    def full_size(self) -> tuple[int, int]:
        return self.facts.size

    @cached_property
    def planned(self) -> tuple[tuple[int, int], ...]:
        """The configured sizes' whole-image outputs: what a level may be made through."""
        return level_sizes(self.configured, self.full_size)

    @property
    def nbytes(self) -> int:
        """The pixels held and the profile and metadata kept for output."""
        return sum(_pixel_bytes(image) for image in self.images) + self.facts.nbytes

    @property
    def images(self) -> list[Image.Image]:
        """The decode (while kept) and the levels made so far."""
        levels = list(self.levels.values())
        return levels if self.base is None else [self.base, *levels]

    def can_make(self, plan: ResizePlan) -> bool:
        whole = is_whole(plan, self.full_size)
        return (whole and plan.size in self.levels) or self.source_for(plan) is not None

    def pixels(self, plan: ResizePlan, animated: bool = False) -> Image.Image | Animation:
        full = self.full_size
        whole = is_whole(plan, full)
        source = (self.level(plan.size) if whole else None) or self.source_for(plan)
        if source is None:
            raise ValueError("plan needs more pixels than this decode holds")  # see can_make
        with decoding():
            if source.size == plan.size and whole:
                return source.copy()  # the encoder may change what it is given
            box = scale_box(plan.box, full, source.size)
            return source.resize(plan.size, LANCZOS, box=box, reducing_gap=REDUCING_GAP)

    def source_for(self, plan: ResizePlan) -> Image.Image | None:
        """The smallest image ``plan`` can be made from, if any is large enough."""
        images = self.images
        index = pick_level([image.size for image in images], plan, self.full_size)
        return None if index is None else images[index]

    def level(self, size: tuple[int, int]) -> Image.Image | None:
        """The whole image at ``size``, made (and kept) from the smallest image
        with 2x headroom; None when none has it. Images with alpha get no
        levels: a cascade would round their premultiplied colours each time."""
        if size in self.levels:
            return self.levels[size]
        if not is_reduction(size, self.full_size) or not self.levelable:
            return None
        plan = ResizePlan((0, 0, *self.full_size), size)
        source = self.source_for(plan)
        if source is None:
            return None
        if source is self.base:
            # Rather than another pass over the large decode, go through the
            # next larger configured size (made once, then kept): a cascade.
            larger = [other for other in self.planned if other[0] * other[1] > size[0] * size[1]]
            through = pick_level(larger, plan, self.full_size)
            if through is not None:
                source = self.level(larger[through]) or source
        with decoding():
            made = source.resize(size, LANCZOS, reducing_gap=REDUCING_GAP)
        self.levels[size] = made
        self._let_base_go()
        return made

    @property
    def levelable(self) -> bool:
        # Only a levelable decode ever gets levels, and only then is it let go.
        return self.base is None or self.base.mode in LEVEL_MODES

    def _let_base_go(self) -> None:
        """Drop the decode, most of the bytes kept, once the levels can make
        every configured size."""
        sizes = [level.size for level in list(self.levels.values())]  # another render may add one
        if all(pick_level(sizes, plan, self.full_size) is not None for plan in self.configured):
            self.base = None


def _pixel_bytes(image: Image.Image) -> int:
    # Pillow keeps every multi-band pixel in 4 bytes (RGB as RGBX).
    return image.width * image.height * (1 if image.mode in ("1", "L", "P") else 4)


def decode_once(
    fresh: FreshSource, specs: Iterable[SizeSpec], max_dimension: int, version: bytes = b""
) -> DecodedOriginal:
    """Decode a still original once, at the smallest DCT scale from which
    every configured size can be made with LANCZOS and 2x headroom."""
    facts = fresh.facts
    served = [spec for spec in specs if not exceeds(spec, max_dimension)]
    wanted = working_size(*facts.size, served, max_dimension)
    pixels, profile = without_large_profile(
        detached(decode(fresh.image, wanted, facts.orientation)), facts.icc_profile
    )
    configured = tuple(plan_resize(*facts.size, spec) for spec in served)
    return DecodedOriginal(replace(facts, icc_profile=profile), pixels, configured, version=version)


def detached(image: Image.Image) -> Image.Image:
    """``image``'s pixels as a plain image, for keeping: an ``ImageFile``
    holds its parser's state (every JPEG marker segment, PNG text chunks,
    the file's bytes) and ``info`` what the header said, none of it counted."""
    plain = image.copy() if isinstance(image, ImageFile.ImageFile) else image
    plain.info = {}
    return plain


def decode_once_covers(
    facts: Facts, plan: ResizePlan, specs: Iterable[SizeSpec], max_dimension: int
) -> bool:
    """Whether the decode ``decode_once`` would make can make ``plan`` (a
    tight crop may need more pixels than the configured sizes do)."""
    served = [spec for spec in specs if not exceeds(spec, max_dimension)]
    working = working_size(*facts.size, served, max_dimension)
    return pick_level([working], plan, facts.size) is not None
