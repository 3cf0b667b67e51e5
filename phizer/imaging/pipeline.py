"""Pillow image pipeline: decode, orient, crop, resize, colour, encode.

Pure functions over bytes and Pillow images; nothing here knows about
HTTP or Tornado. Errors are raised as the domain errors of
``phizer.errors`` so the caller can map them to statuses. Formats live in
``phizer.formats``, colour in ``phizer.colour``, metadata in
``phizer.metadata``, animations in ``phizer.animation`` and the encoders'
settings in ``phizer.encoding``.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING

from PIL import Image, UnidentifiedImageError

from phizer.config.sizes import SizeSpec
from phizer.errors import BadImage, SourceTooLarge, UnsupportedImage
from phizer.imaging import jpegscale
from phizer.imaging.animation import Animation, decode_animation, frame_count
from phizer.imaging.colour import output_colour
from phizer.imaging.encoding import EncodeOptions, encode
from phizer.imaging.formats import ALLOWED_FORMATS, ANIMATED_FORMATS, CONTENT_TYPES, choose_format
from phizer.imaging.geometry import (
    ResizePlan,
    draft_size,
    exceeds,
    is_reduction,
    is_whole,
    level_sizes,
    pick_level,
    plan_crop_only,
    plan_resize,
    scale_box,
    working_size,
)
from phizer.imaging.metadata import ORIENTATION_TAG, Metadata, read_metadata
from phizer.imaging.qualities import quality_for
from phizer.web.urls import Crop

if TYPE_CHECKING:
    from phizer.config.loader import Settings

__all__ = [
    "ALLOWED_FORMATS",
    "CONTENT_TYPES",
    "DecodedOriginal",
    "OutputOptions",
    "Rendered",
    "decode_original",
    "render",
    "render_decoded",
]

# Recognised only to say why they are refused; never handed to a decoder.
_REFUSED_SIGNATURES = (
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"%PDF", "PDF"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"#define", "XBM"),
    (b"/* XPM */", "XPM"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"qoif", "QOI"),
)
# ISO base media brands that are AVIF; other HEIF brands (HEIC) are refused.
_AVIF_BRANDS = (b"avif", b"avis")
DEFAULT_MAX_PIXELS = 50_000_000
# Modes whose whole-image outputs are kept as levels (no alpha, see level()).
LEVEL_MODES = ("L", "RGB", "CMYK")
# Same-looking result as a plain LANCZOS resize, several times faster.
REDUCING_GAP = 3.0
LANCZOS = Image.Resampling.LANCZOS
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# RuntimeError: libavif's failures; ArithmeticError: damaged AVIF timing.
_DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    struct.error,
    RuntimeError,
    ArithmeticError,
)


@dataclass(frozen=True)
class OutputOptions:
    """The ``[properties]`` settings that shape every output (see Settings)."""

    quality: int = 95
    canvas_color: tuple[int, int, int] = (255, 255, 255)
    keep_icc: bool = True
    strip_metadata: bool = True
    animated: bool = False
    max_frames: int = 100
    progressive: bool = False
    webp_quality: int | None = None
    avif_quality: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> OutputOptions:
        return cls(
            quality=settings.image_quality,
            canvas_color=settings.canvas_color,
            keep_icc=settings.keep_icc,
            strip_metadata=settings.strip_metadata,
            animated=settings.animated,
            max_frames=settings.max_frames,
            progressive=settings.progressive,
            webp_quality=settings.webp_quality,
            avif_quality=settings.avif_quality,
        )


@dataclass(frozen=True)
class Rendered:
    data: bytes
    content_type: str


def render(
    data: bytes,
    spec: SizeSpec,
    crop: Crop | None,
    options: OutputOptions,
    resize: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    offers: tuple[str, ...] = (),
) -> Rendered:
    """Make the output for one request from the original's bytes.

    With ``resize`` false (sizes at or above ``max_dimension``) the crop
    points still apply but the result keeps the source's scale, and an
    uncropped request gets the original bytes back untouched, metadata
    and all. ``offers`` are the formats the client accepts, best first.
    """
    image = open_image(data, max_pixels)
    source_format = image.format or ""
    if not resize and crop is None:
        return Rendered(data, CONTENT_TYPES[source_format])
    frames = 1
    if options.animated:
        with _decoding():  # a GIF's frames are counted by reading through them
            frames = frame_count(image, options.max_frames)
    output_format = choose_format(
        source_format, spec.output_format, offers, frames > 1, has_alpha(image)
    )
    if output_format not in ANIMATED_FORMATS:
        frames = 1
    orientation = _orientation(image)
    upright = _upright_size(image.size, orientation)
    plan = plan_resize(*upright, spec, crop) if resize else plan_crop_only(*upright, crop)
    check_pixels(image.size, plan.size, frames, max_pixels)
    metadata = Metadata() if options.strip_metadata else read_metadata(image)
    if frames > 1:
        pixels: Image.Image | Animation = _decode_animation(image, plan, orientation, frames)
    else:
        pixels = _resized_still(image, plan, orientation, upright)
    icc_profile = image.info.get("icc_profile")
    return _finish(pixels, icc_profile, metadata, output_format, spec, options)


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

    base: Image.Image | None
    full_size: tuple[int, int]  # upright, at full resolution
    source_format: str
    has_alpha: bool
    icc_profile: bytes | None
    metadata: Metadata
    # The configured sizes' plans on this image (sizes at max_dimension, served
    # untouched, left out): what the levels must be able to make.
    configured: tuple[ResizePlan, ...] = ()
    levels: dict[tuple[int, int], Image.Image] = field(default_factory=dict)

    @cached_property
    def planned(self) -> tuple[tuple[int, int], ...]:
        """The configured sizes' whole-image outputs: what a level may be made through."""
        return level_sizes(self.configured, self.full_size)

    @property
    def nbytes(self) -> int:
        return sum(_pixel_bytes(image) for image in self.images) + len(self.icc_profile or b"")

    @property
    def images(self) -> list[Image.Image]:
        """The decode (while kept) and the levels made so far."""
        levels = list(self.levels.values())
        return levels if self.base is None else [self.base, *levels]

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
        with _decoding():
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
        sizes = [level.size for level in self.levels.values()]
        if all(pick_level(sizes, plan, self.full_size) is not None for plan in self.configured):
            self.base = None


def _pixel_bytes(image: Image.Image) -> int:
    # Pillow keeps every multi-band pixel in 4 bytes (RGB as RGBX).
    return image.width * image.height * (1 if image.mode in ("1", "L", "P") else 4)


def decode_original(
    data: bytes,
    specs: Iterable[SizeSpec],
    options: OutputOptions,
    max_dimension: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DecodedOriginal | None:
    """Decode ``data`` once, at the smallest DCT scale from which every
    configured size can be made with LANCZOS and 2x headroom; ``None`` for
    animations served animated (they are made frame by frame per request)."""
    specs = list(specs)
    image = open_image(data, max_pixels)
    if options.animated:
        with _decoding():
            if frame_count(image, 2) > 1:
                return None
    orientation = _orientation(image)
    upright = _upright_size(image.size, orientation)
    wanted = working_size(*upright, specs, max_dimension)
    metadata = Metadata() if options.strip_metadata else read_metadata(image)
    source_format, alpha = image.format or "", has_alpha(image)
    icc_profile = image.info.get("icc_profile")
    pixels = decode(image, wanted, orientation)
    served = [spec for spec in specs if not exceeds(spec, max_dimension)]
    configured = tuple(plan_resize(*upright, spec) for spec in served)
    return DecodedOriginal(pixels, upright, source_format, alpha, icc_profile, metadata, configured)


def render_decoded(
    decoded: DecodedOriginal,
    spec: SizeSpec,
    crop: Crop | None,
    options: OutputOptions,
    resize: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    offers: tuple[str, ...] = (),
) -> Rendered | None:
    """``render`` from a decoded original; ``None`` when no image of it is
    large enough for this request (a tight crop, or a size at source scale)."""
    full = decoded.full_size
    plan = plan_resize(*full, spec, crop) if resize else plan_crop_only(*full, crop)
    level = decoded.level(plan.size) if resize and is_whole(plan, full) else None
    source = level or decoded.source_for(plan)
    if source is None:
        return None
    check_pixels(full, plan.size, 1, max_pixels)
    output_format = choose_format(
        decoded.source_format, spec.output_format, offers, False, decoded.has_alpha
    )
    with _decoding():
        if source.size == plan.size and is_whole(plan, full):
            pixels = source.copy()  # the encoder may change what it is given
        else:
            box = scale_box(plan.box, full, source.size)
            pixels = source.resize(plan.size, LANCZOS, box=box, reducing_gap=REDUCING_GAP)
    return _finish(pixels, decoded.icc_profile, decoded.metadata, output_format, spec, options)


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
    return quality_for(image_format, spec.quality or options.quality)


def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Identify the image from its header and check its size; nothing is decoded."""
    # Pillow's own fence (also applied when it seeks between frames) agrees
    # with ours; each process serves one request at a time.
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise SourceTooLarge("source image has too many pixels") from None
    except UnidentifiedImageError:
        refused = refused_format(data)
        if refused is not None:
            raise UnsupportedImage(f"{refused} images are not served") from None
        raise BadImage("origin sent something that is not a supported image") from None
    except _DECODE_ERRORS as err:
        raise BadImage(f"undecodable image: {err}") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise BadImage("image has no pixels")
    if width * height > max_pixels:
        raise SourceTooLarge(f"source image has {width}x{height} pixels, more than {max_pixels}")
    return image


def check_pixels(
    source: tuple[int, int], output: tuple[int, int], frames: int, max_pixels: int
) -> None:
    """Refuse work over ``max_pixels``: every decoded (or written) frame counts."""
    largest = max(source[0] * source[1], output[0] * output[1])
    if largest * frames > max_pixels:
        raise SourceTooLarge(
            f"{frames} frame(s) of up to {largest} pixels are more than {max_pixels}"
        )


def refused_format(data: bytes) -> str | None:
    """Name a format we recognise but refuse, so the client is told why."""
    head = data[:512].lstrip()
    for signature, name in _REFUSED_SIGNATURES:
        if head.startswith(signature):
            return name
    if data[4:8] == b"ftyp":
        brands = data[8:12] + data[16 : min(len(data), 8 + int.from_bytes(data[:4], "big"))]
        if not any(brand in brands for brand in _AVIF_BRANDS):
            return "HEIF"
    lowered = head[:256].lower()
    if lowered.startswith(b"<?xml") or b"<svg" in lowered:
        return "SVG"
    return None


def has_alpha(image: Image.Image) -> bool:
    """Whether the source has transparency, from its header."""
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        return True
    palette = image.palette if image.mode == "P" else None
    return palette is not None and palette.mode == "RGBA"


def _colour(
    pixels: Image.Image | Animation, icc_profile: bytes | None, keep_icc: bool, image_format: str
) -> tuple[Image.Image | Animation, bytes | None]:
    if isinstance(pixels, Animation):
        frames, profile = output_colour(pixels.frames, icc_profile, keep_icc, image_format)
        return replace(pixels, frames=frames), profile
    [still], profile = output_colour([pixels], icc_profile, keep_icc, image_format)
    return still, profile


@contextmanager
def _decoding() -> Iterator[None]:
    """Turn what decoders raise into domain errors."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise SourceTooLarge("source image has too many pixels") from None
    except _DECODE_ERRORS as err:
        raise BadImage(f"undecodable image: {err}") from None


def _resized_still(
    image: Image.Image, plan: ResizePlan, orientation: int, upright: tuple[int, int]
) -> Image.Image:
    pixels = decode(image, draft_size(upright[0], upright[1], plan), orientation)
    box = scale_box(plan.box, upright, pixels.size)
    with _decoding():
        return pixels.resize(plan.size, LANCZOS, box=box, reducing_gap=REDUCING_GAP)


def _decode_animation(
    image: Image.Image, plan: ResizePlan, orientation: int, frames: int
) -> Animation:
    transpose = _TRANSPOSE.get(orientation)

    def prepare(frame: Image.Image) -> Image.Image:
        if transpose is not None:
            frame = frame.transpose(transpose)
        return frame.resize(plan.size, LANCZOS, box=plan.box, reducing_gap=REDUCING_GAP)

    with _decoding():
        return decode_animation(image, frames, prepare)


def decode(image: Image.Image, wanted: tuple[int, int], orientation: int) -> Image.Image:
    """Decode the first frame upright, in a mode that resizes correctly.

    JPEGs are decoded at the smallest DCT scale (1/8, 1/4, 3/8, 1/2 or 1)
    that still gives at least ``wanted`` (upright) pixels
    (``jpegscale.draft``), which cuts the decode cost by up to 64x.
    """
    if image.format == "JPEG":
        jpegscale.draft(image, _upright_size(wanted, orientation))  # back to stored axes
    with _decoding():
        image.load()
        transpose = _TRANSPOSE.get(orientation)
        if transpose is not None:
            image = image.transpose(transpose)
        return resizable_mode(image)


def resizable_mode(image: Image.Image) -> Image.Image:
    """Convert modes that resample badly or not at all (palette, 1-bit, 16-bit).

    CMYK stays CMYK: it is made RGB after the resize, through its ICC
    profile when it has one (``phizer.colour``).
    """
    mode = image.mode
    if mode in ("1", "L", "RGB") and "transparency" in image.info:
        return image.convert("RGBA" if mode == "RGB" else "LA")  # a colour key becomes alpha
    if mode in ("RGB", "RGBA", "L", "LA", "CMYK"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode in ("P", "PA"):
        return image.convert("RGBA" if has_alpha(image) else "RGB")
    if mode.startswith("I"):
        # 16-bit samples: scale to 8 bits instead of clipping everything to white.
        return image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    if mode == "F":
        return image.convert("L")
    if mode in ("RGBa", "La"):
        return image.convert(mode.upper())
    return image.convert("RGBA" if "A" in mode else "RGB")


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _upright_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size
