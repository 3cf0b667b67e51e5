"""Pillow image pipeline: decode, orient, crop, resize, encode.

Pure functions over bytes and Pillow images; nothing here knows about
HTTP or Tornado. Errors are raised as the domain errors of
``phizer.errors`` so the caller can map them to statuses.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from phizer.errors import BadImage, SourceTooLarge, UnsupportedImage
from phizer.geometry import ResizePlan, draft_size, plan_crop_only, plan_resize, scale_box
from phizer.sizes import SizeSpec
from phizer.urls import Crop

# Decoders we serve; anything else (EPS runs Ghostscript, for one) is refused.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")
CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
}
# Recognised only to say why they are refused; never handed to a decoder.
_REFUSED_SIGNATURES = (
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"%PDF", "PDF"),
    (b"8BPS", "PSD"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"#define", "XBM"),
    (b"/* XPM */", "XPM"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"qoif", "QOI"),
)
DEFAULT_MAX_PIXELS = 50_000_000
# Same-looking result as a plain LANCZOS resize, several times faster.
REDUCING_GAP = 3.0
ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_FORMATS_WITH_ALPHA = ("PNG", "GIF", "WEBP")


@dataclass(frozen=True)
class OutputOptions:
    quality: int = 95
    canvas_color: tuple[int, int, int] = (255, 255, 255)


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
) -> Rendered:
    """Make the output for one request from the original's bytes.

    With ``resize`` false (sizes at or above ``max_dimension``) the crop
    points still apply but the result keeps the source's scale, and an
    uncropped request gets the original bytes back untouched.
    """
    image = open_image(data, max_pixels)
    source_format = image.format or ""
    if not resize and crop is None:
        return Rendered(data, CONTENT_TYPES[source_format])
    orientation = _orientation(image)
    upright = _upright_size(image.size, orientation)
    if resize:
        plan = plan_resize(upright[0], upright[1], spec, crop)
    else:
        plan = plan_crop_only(upright[0], upright[1], crop)
    icc_profile = image.info.get("icc_profile")
    pixels = decode(image, plan, orientation, upright)
    if pixels.mode != image.mode and image.mode == "CMYK":
        icc_profile = None  # a CMYK profile does not describe RGB pixels
    box = scale_box(plan.box, upright, pixels.size)
    result = pixels.resize(plan.size, Image.Resampling.LANCZOS, box=box, reducing_gap=REDUCING_GAP)
    quality = spec.quality or options.quality
    return Rendered(
        encode(result, source_format, quality, options.canvas_color, icc_profile),
        CONTENT_TYPES[source_format],
    )


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
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise BadImage(f"undecodable image: {err}") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise BadImage("image has no pixels")
    if width * height > max_pixels:
        raise SourceTooLarge(
            f"source image has {width}x{height} pixels, more than {max_pixels}"
        )
    return image


def refused_format(data: bytes) -> str | None:
    """Name a format we recognise but refuse, so the client is told why."""
    head = data[:512].lstrip()
    for signature, name in _REFUSED_SIGNATURES:
        if head.startswith(signature):
            return name
    if data[4:8] == b"ftyp":
        return "HEIF/AVIF"
    lowered = head[:256].lower()
    if lowered.startswith(b"<?xml") or b"<svg" in lowered:
        return "SVG"
    return None


def decode(
    image: Image.Image, plan: ResizePlan, orientation: int, upright: tuple[int, int]
) -> Image.Image:
    """Decode the first frame upright, in a mode that resizes correctly.

    JPEGs are decoded at a reduced scale when the plan allows it
    (``draft``), which cuts the decode cost by up to 64x.
    """
    if image.format == "JPEG":
        wanted = draft_size(upright[0], upright[1], plan)
        image.draft(None, _upright_size(wanted, orientation))  # back to stored axes
    try:
        image.load()
    except (OSError, ValueError, SyntaxError, EOFError, IndexError) as err:
        raise BadImage(f"undecodable image: {err}") from None
    transpose = _TRANSPOSE.get(orientation)
    if transpose is not None:
        image = image.transpose(transpose)
    return resizable_mode(image)


def resizable_mode(image: Image.Image) -> Image.Image:
    """Convert modes that resample badly or not at all (palette, 1-bit, 16-bit)."""
    mode = image.mode
    if mode in ("RGB", "RGBA", "L", "LA"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if has_alpha else "RGB")
    if mode.startswith("I"):
        # 16-bit samples: scale to 8 bits instead of clipping everything to white.
        return image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    if mode == "F":
        return image.convert("L")
    if mode in ("RGBa", "La"):
        return image.convert(mode.upper())
    return image.convert("RGBA" if "A" in mode else "RGB")


def encode(
    image: Image.Image,
    image_format: str,
    quality: int,
    canvas_color: tuple[int, int, int],
    icc_profile: bytes | None = None,
) -> bytes:
    """Encode in ``image_format``, flattening alpha where the format has none."""
    if image.mode in ("RGBA", "LA") and image_format not in _FORMATS_WITH_ALPHA:
        image = flatten(image, canvas_color)
    params: dict[str, object] = {}
    if icc_profile and image_format in ("JPEG", "PNG", "WEBP"):
        params["icc_profile"] = icc_profile
    if image_format == "JPEG":
        params.update(quality=quality, optimize=True)
    elif image_format == "WEBP":
        params.update(quality=quality)
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if image.mode == "LA" else "RGB")
    elif image_format == "GIF":
        image, transparency = to_palette(image)
        if transparency is not None:
            params["transparency"] = transparency
    buffer = io.BytesIO()
    image.save(buffer, image_format, **params)
    return buffer.getvalue()


def flatten(image: Image.Image, color: tuple[int, int, int]) -> Image.Image:
    """Composite an image with alpha onto an opaque background colour."""
    background = Image.new("RGB", image.size, color)
    background.paste(image.convert("RGBA"), mask=image.getchannel("A"))
    if image.mode == "LA":
        return background.convert("L")
    return background


def to_palette(image: Image.Image) -> tuple[Image.Image, int | None]:
    """Quantize for GIF; pixels under half opacity become the transparent index."""
    if image.mode not in ("RGBA", "LA"):
        return image.convert("RGB").quantize(256), None
    transparent = 255
    paletted = image.convert("RGB").quantize(transparent)
    palette = paletted.getpalette() or []
    paletted.putpalette(palette + [0] * (768 - len(palette)))
    clear = image.getchannel("A").point(lambda alpha: 255 if alpha < 128 else 0)
    paletted.paste(transparent, mask=clear)
    return paletted, transparent


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _upright_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size
