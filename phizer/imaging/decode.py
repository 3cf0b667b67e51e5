"""Opening and decoding originals: the allow-list, the pixel fence, orientation.

Only the decoders of ``formats.ALLOWED_FORMATS`` ever see origin bytes, and
an image's size is checked from its header before anything is decoded.
Whatever a decoder raises becomes a domain error of ``phizer.errors``.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image, ImageFile, UnidentifiedImageError

from phizer.errors import BadImage, SourceTooLarge, UnsupportedImage
from phizer.imaging import jpegscale
from phizer.imaging.formats import ALLOWED_FORMATS
from phizer.imaging.metadata import ORIENTATION_TAG
from phizer.imaging.structure import DEFAULT_LIMITS, DecodeLimits, check_structure

DEFAULT_MAX_PIXELS = 50_000_000
# Image containers Pillow has no plugin for, named so the client is told
# why they are refused (what Pillow can open is named by Pillow).
_PDF = b"%PDF"
# ISO base media brands that are AVIF; other HEIF brands (HEIC) are refused.
_AVIF_BRANDS = (b"avif", b"avis")
# What other Pillow plugins are shown to name a refused image: headers are
# at the start, and some plugins read line by line through whatever follows
# (about 50 ms a MiB).
_IDENTIFY_BYTES = 4 * 1024 * 1024
# XML declarations, comments, processing instructions and a doctype before the root.
_XML_PROLOG = re.compile(
    rb"\s*(?:<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>\[]*(?:\[.*?\])?\s*>)", re.S | re.I
)
_SVG_ROOT = re.compile(rb"\s*<(?:[\w.-]+:)?svg[\s>/]", re.I)
TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# RuntimeError: libavif's failures; ArithmeticError: damaged AVIF timing.
DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    struct.error,
    RuntimeError,
    ArithmeticError,
)


def set_pixel_limit(max_pixels: int) -> None:
    """Pillow's own decompression-bomb fence (also applied when it seeks
    between frames), set once per process to agree with ``max_source_pixels``."""
    Image.MAX_IMAGE_PIXELS = max_pixels


def open_image(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, limits: DecodeLimits = DEFAULT_LIMITS
) -> ImageFile.ImageFile:
    """Identify the image from its header and check its size and structure;
    nothing is decoded."""
    check_structure(data, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise SourceTooLarge("source image has too many pixels") from None
    except UnidentifiedImageError:
        refused = unsupported_format(data)
        if refused is not None:
            raise UnsupportedImage(f"{refused} images are not served") from None
        raise BadImage("origin sent something that is not a supported image") from None
    except DECODE_ERRORS as err:
        raise BadImage(f"undecodable image: {err}") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise BadImage("image has no pixels")
    if width * height > max_pixels:
        raise SourceTooLarge(f"source image has {width}x{height} pixels, more than {max_pixels}")
    return image


def image_format(image: Image.Image) -> str:
    """The allow-listed format ``image`` is served as: an MPO (a JPEG with
    more pictures after the first, as phones write them) is a JPEG."""
    return "JPEG" if image.format == "MPO" else image.format or ""


def unsupported_format(data: bytes) -> str | None:
    """Name the format of an image the allow-list refused, when it is one.

    Pillow's other plugins read only the header to say whether they know
    it (no decoder runs); SVG, PDF and HEIF have no plugin and are named
    from their own structure. None: not an image at all.
    """
    Image.init()  # every plugin registered, not only the common ones
    head = data[:_IDENTIFY_BYTES]
    for name in Image.ID:
        if name in ALLOWED_FORMATS or name == "MPO":
            continue
        known = _opens_as(head, name)
        if known is not None:
            return known
    if data[4:8] == b"ftyp":
        brands = data[8:12] + data[16 : min(len(data), 8 + int.from_bytes(data[:4], "big"))]
        if not any(brand in brands for brand in _AVIF_BRANDS):
            return "HEIF"
    if data.lstrip()[:4] == _PDF:
        return "PDF"
    if is_svg(data):
        return "SVG"
    return None


def _opens_as(data: bytes, name: str) -> str | None:
    # One plugin at a time: Image.open gives up on the first plugin that
    # raises something unexpected instead of trying the next one.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=[name]) as image:
                return image.format or name
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return name  # an image, too large as well
    except Exception:  # not this plugin's, or a header it could not read
        return None


def is_svg(data: bytes) -> bool:
    """Whether ``data`` is XML whose root element is ``svg``, whatever
    declarations, comments and doctype come first."""
    pos = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    while (prolog := _XML_PROLOG.match(data, pos)) is not None and prolog.end() > pos:
        pos = prolog.end()
    return _SVG_ROOT.match(data, pos) is not None


def has_alpha(image: Image.Image) -> bool:
    """Whether the source has transparency, from its header."""
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        return True
    palette = image.palette if image.mode == "P" else None
    return palette is not None and palette.mode == "RGBA"


def orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8), 1 when absent or unreadable."""
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def decode(image: ImageFile.ImageFile, wanted: tuple[int, int], orientation: int) -> Image.Image:
    """Decode the first frame upright, in a mode that resizes correctly.

    JPEGs are decoded at the smallest DCT scale (1/8, 1/4, 3/8, 1/2 or 1)
    that still gives at least ``wanted`` (upright) pixels
    (``jpegscale.draft``), which cuts the decode cost by up to 64x.
    """
    if image_format(image) == "JPEG":
        jpegscale.draft(image, upright_size(wanted, orientation))  # back to stored axes
    with decoding():
        image.load()
        transpose = TRANSPOSE.get(orientation)
        upright = image if transpose is None else image.transpose(transpose)
        return resizable_mode(upright)


def resizable_mode(image: Image.Image) -> Image.Image:
    """Convert modes that resample badly or not at all (palette, 1-bit, 16-bit).

    CMYK stays CMYK: it is made RGB after the resize, through its ICC
    profile when it has one (``phizer.imaging.colour``).
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


@contextmanager
def decoding() -> Iterator[None]:
    """Turn what decoders raise into domain errors."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise SourceTooLarge("source image has too many pixels") from None
    except DECODE_ERRORS as err:
        raise BadImage(f"undecodable image: {err}") from None
