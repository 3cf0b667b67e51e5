"""Colour: keep the source's ICC profile, or convert the pixels to sRGB.

An image without a profile is taken to be sRGB, as browsers do. A profile
that does not parse, or that describes another colour space than the
pixels', is ignored rather than failing the request. CMYK pixels always
leave as RGB: through their profile when they have one, else by Pillow's
naive conversion.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import cache

from PIL import Image, ImageCms

from phizer.imaging.formats import GREY_FORMATS, ICC_FORMATS

# ICC colour space signature -> the Pillow mode of pixels it describes.
_PROFILE_MODES = {"RGB ": "RGB", "GRAY": "L", "CMYK": "CMYK"}
_CMS_ERRORS = (ImageCms.PyCMSError, OSError, ValueError, TypeError)
# Profiles above this are not copied into every output: the pixels are
# converted to sRGB instead. Working-space and display profiles are a few
# kB (sRGB with its LUTs about 60 kB); an output would otherwise carry
# megabytes of profile for a few kB of pixels.
MAX_KEPT_PROFILE = 256 * 1024


@cache
def srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def parse_profile(data: bytes | None) -> ImageCms.ImageCmsProfile | None:
    """The profile, or None when there is none or it cannot be read."""
    if not data:
        return None
    try:
        return ImageCms.ImageCmsProfile(io.BytesIO(data))
    except _CMS_ERRORS:
        return None


def profile_mode(profile: ImageCms.ImageCmsProfile) -> str | None:
    """The Pillow mode of the pixels ``profile`` describes, if it is one we convert."""
    try:
        return _PROFILE_MODES.get(profile.profile.xcolor_space)
    except _CMS_ERRORS:  # a damaged header field
        return None


def colour_mode(mode: str) -> str:
    """The mode without alpha that an ICC profile for ``mode`` pixels describes."""
    if mode == "CMYK":
        return "CMYK"
    return "L" if mode in ("L", "LA") else "RGB"


def output_colour(
    images: Sequence[Image.Image],
    icc_profile: bytes | None,
    keep_icc: bool,
    output_format: str,
) -> tuple[list[Image.Image], bytes | None]:
    """The images as they will be written, and the profile to embed with them.

    With ``keep_icc`` a valid profile up to ``MAX_KEPT_PROFILE`` bytes
    travels with the pixels when the output format can carry it; otherwise
    the pixels are converted to sRGB and no profile is written.
    """
    base = colour_mode(images[0].mode)
    profile = parse_profile(icc_profile)
    if profile is not None and profile_mode(profile) != base:
        profile = None  # describes other pixels than these, or nothing readable
    keep_grey = output_format in GREY_FORMATS
    keeps = base == "RGB" or (base == "L" and keep_grey)
    small = icc_profile is not None and len(icc_profile) <= MAX_KEPT_PROFILE
    if profile is not None and keep_icc and small and keeps and output_format in ICC_FORMATS:
        return list(images), icc_profile
    if profile is not None:
        converted = to_srgb(images, profile, keep_grey)
        if converted is not None:
            return converted, None
    if base == "CMYK":
        return [image.convert("RGB") for image in images], None
    return list(images), None


def without_large_profile(
    image: Image.Image, icc_profile: bytes | None
) -> tuple[Image.Image, bytes | None]:
    """``image`` converted to sRGB through a profile above ``MAX_KEPT_PROFILE``
    (which ``output_colour`` would never keep), and the profile to keep."""
    if icc_profile is None or len(icc_profile) <= MAX_KEPT_PROFILE:
        return image, icc_profile
    profile = parse_profile(icc_profile)
    if profile is not None and profile_mode(profile) == colour_mode(image.mode):
        converted = to_srgb([image], profile, keep_grey=True)
        if converted is not None:
            return converted[0], None
    return image, None  # a profile output_colour would ignore


def to_srgb(
    images: Sequence[Image.Image], profile: ImageCms.ImageCmsProfile, keep_grey: bool
) -> list[Image.Image] | None:
    """Convert through ``profile`` to sRGB; None when the profile cannot be used."""
    base = colour_mode(images[0].mode)
    try:
        transform = ImageCms.buildTransform(
            profile, srgb_profile(), base, "RGB", ImageCms.Intent.PERCEPTUAL
        )
        return [_apply(image, transform, base, keep_grey) for image in images]
    except _CMS_ERRORS:
        return None


def _apply(
    image: Image.Image, transform: ImageCms.ImageCmsTransform, base: str, keep_grey: bool
) -> Image.Image:
    alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
    converted = transform.apply(image.convert(base) if alpha else image)
    if base == "L" and keep_grey:
        converted = converted.convert("L")
    if alpha is not None:
        converted.putalpha(alpha)
    return converted
