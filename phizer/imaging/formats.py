"""Which image formats phizer reads and writes, and what each can hold.

Names are Pillow's format names. ``choose_format`` is a pure function of
the request and the source, so the negotiation is tested without images.
"""

from __future__ import annotations

from collections.abc import Sequence

from phizer.engine.detect import enable_avif

# An engine without AVIF of its own (Pillow-SIMD built on Debian 12) gets
# it from pillow-avif-plugin, under the same format name.
enable_avif()

# Decoders we serve; anything else (EPS runs Ghostscript, for one) is refused.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "AVIF", "BMP", "TIFF")
# Encoders we write with; BMP and TIFF sources are re-encoded as PNG or JPEG.
WRITABLE_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "AVIF")
CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "AVIF": "image/avif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
ALPHA_FORMATS = ("PNG", "GIF", "WEBP", "AVIF")
# Sources whose extra frames are an animation (a TIFF's are pages: never).
ANIMATED_SOURCES = ("GIF", "WEBP", "PNG", "AVIF")
# Animated outputs. Pillow can write animated AVIF too, but it cannot set
# its loop count and encodes frames several times slower than WebP, so
# animations go to WebP, GIF or APNG.
ANIMATED_FORMATS = ("GIF", "WEBP", "PNG")
ICC_FORMATS = ("JPEG", "PNG", "WEBP", "AVIF")
# Formats that store a single grey channel (the others are written as RGB).
GREY_FORMATS = ("JPEG", "PNG", "AVIF")


def can_hold(image_format: str, animated: bool, has_alpha: bool) -> bool:
    """Whether ``image_format`` can hold the result without losing frames or alpha."""
    if image_format not in WRITABLE_FORMATS:
        return False
    if animated and image_format not in ANIMATED_FORMATS:
        return False
    return not has_alpha or image_format in ALPHA_FORMATS


def choose_format(
    source_format: str,
    spec_format: str | None,
    offers: Sequence[str],
    animated: bool,
    has_alpha: bool,
) -> str:
    """The output format for one request.

    The size's own ``format=`` wins (an animation then keeps its first
    frame where that format cannot animate). Otherwise the first format the
    client was offered that can hold the result, else the source's own
    format, else PNG for images with alpha and JPEG for the rest.
    """
    if spec_format:
        return spec_format
    for offer in offers:
        if can_hold(offer, animated, has_alpha):
            return offer
    if can_hold(source_format, animated, has_alpha):
        return source_format
    if animated:  # an animated AVIF source
        return "WEBP"
    return "PNG" if has_alpha else "JPEG"
