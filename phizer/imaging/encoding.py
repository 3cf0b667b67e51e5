"""Writing the result: modes each format accepts, encoder settings, frames."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

from phizer.imaging.animation import Animation
from phizer.imaging.formats import ALPHA_FORMATS, ICC_FORMATS
from phizer.imaging.metadata import Metadata, save_params

# zlib level 6: graphics come out about 20% smaller than at 3 and photos
# 5%, for about twice the time; 9 costs 4x more for under 2%.
PNG_COMPRESS_LEVEL = 6
# libavif speed 8: about 2.7x faster than Pillow's default 6 for 4-5% more bytes at
# equal quality (bench/FIDELITY.md).
AVIF_SPEED = 8
GIF_TRANSPARENT_INDEX = 255


@dataclass(frozen=True)
class EncodeOptions:
    """How to write one result; ``quality`` is already on the format's own scale."""

    quality: int = 95
    background: tuple[int, int, int] = (255, 255, 255)
    progressive: bool = False
    icc_profile: bytes | None = None
    metadata: Metadata = field(default_factory=Metadata)


def encode(
    image: Image.Image | Animation, image_format: str, options: EncodeOptions | None = None
) -> bytes:
    """Encode a still image or an animation in ``image_format``."""
    options = options or EncodeOptions()
    if isinstance(image, Animation):
        frames, animation = image.frames, image
    else:
        frames, animation = [image], None
    ready = [writable(frame, image_format, options.background) for frame in frames]
    params = encoder_params(image_format, options)
    if animation is not None and len(ready) > 1:
        params.update(animation_params(image_format, animation, ready))
    buffer = io.BytesIO()
    ready[0].save(buffer, image_format, **params)
    return buffer.getvalue()


def encoder_params(image_format: str, options: EncodeOptions) -> dict[str, object]:
    params = save_params(options.metadata, image_format)
    if options.icc_profile and image_format in ICC_FORMATS:
        params["icc_profile"] = options.icc_profile
    if image_format == "JPEG":
        params.update(quality=options.quality, optimize=True, progressive=options.progressive)
    elif image_format == "PNG":
        params.update(optimize=False, compress_level=PNG_COMPRESS_LEVEL)
    elif image_format == "WEBP":
        params.update(quality=options.quality)
    elif image_format == "AVIF":
        params.update(quality=options.quality, speed=AVIF_SPEED)
    return params


def animation_params(
    image_format: str, animation: Animation, frames: Sequence[Image.Image]
) -> dict[str, object]:
    params: dict[str, object] = {
        "save_all": True,
        "append_images": list(frames[1:]),
        "duration": list(animation.durations),
    }
    if animation.loop is not None:
        params["loop"] = animation.loop
    elif image_format != "GIF":  # a GIF without a loop count plays once
        params["loop"] = 1
    if image_format == "GIF" and any("transparency" in frame.info for frame in frames):
        params["disposal"] = 2  # clear each frame, or the previous one shows through
    return params


def writable(
    image: Image.Image, image_format: str, background: tuple[int, int, int]
) -> Image.Image:
    """``image`` in a mode ``image_format`` accepts, its ``info`` emptied.

    Pillow's encoders pick up comments and profiles from ``info``; only what
    the caller passes explicitly may be written. ``image`` is an
    intermediate result, so its ``info`` is cleared in place.
    """
    if image.mode in ("RGBA", "LA") and image_format not in ALPHA_FORMATS:
        image = flatten(image, background)
    if image_format == "GIF":
        return to_palette(image)
    if image_format == "WEBP" and image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if image.mode == "LA" else "RGB")
    elif image_format == "AVIF" and image.mode == "LA":
        image = image.convert("RGBA")
    image.info = {}
    return image


def flatten(image: Image.Image, color: tuple[int, int, int]) -> Image.Image:
    """Composite an image with alpha onto an opaque background colour."""
    background = Image.new("RGB", image.size, color)
    background.paste(image.convert("RGBA"), mask=image.getchannel("A"))
    if image.mode == "LA":
        return background.convert("L")
    return background


def to_palette(image: Image.Image) -> Image.Image:
    """Quantize for GIF; pixels under half opacity become the transparent index."""
    if image.mode not in ("RGBA", "LA"):
        paletted = image.convert("RGB").quantize(256)
        paletted.info = {}
        return paletted
    paletted = image.convert("RGB").quantize(GIF_TRANSPARENT_INDEX)
    palette = paletted.getpalette() or []
    paletted.putpalette(palette + [0] * (768 - len(palette)))
    clear = image.getchannel("A").point(lambda alpha: 255 if alpha < 128 else 0)
    paletted.paste(GIF_TRANSPARENT_INDEX, mask=clear)
    paletted.info = {"transparency": GIF_TRANSPARENT_INDEX}
    return paletted
