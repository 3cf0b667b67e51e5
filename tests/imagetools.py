"""Synthetic test images and tolerant comparisons (never byte equality)."""

from __future__ import annotations

import io

from PIL import Image, ImageChops, ImageDraw, ImageStat


def photo(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """An asymmetric picture: gradients plus a red block in the top-left
    corner and a blue bar along the bottom, so flips and rotations show."""
    red = Image.linear_gradient("L").resize((width, height))
    green = red.transpose(Image.Transpose.ROTATE_90).resize((width, height))
    blue = Image.new("L", (width, height), 96)
    image = Image.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width // 4, height // 4), fill=(255, 0, 0))
    draw.rectangle((0, height - max(1, height // 8), width, height), fill=(0, 0, 255))
    if mode == "RGBA":
        image.putalpha(Image.linear_gradient("L").resize((width, height)))
        return image
    return image.convert(mode)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def rms_difference(first: Image.Image, second: Image.Image) -> float:
    """Root-mean-square pixel difference on a 0-255 scale, compared as RGB
    at the first image's size."""
    a = first.convert("RGB")
    b = second.convert("RGB").resize(a.size, Image.Resampling.LANCZOS)
    stat = ImageStat.Stat(ImageChops.difference(a, b))
    return (sum(value**2 for value in stat.rms) / len(stat.rms)) ** 0.5


def similar(first: Image.Image, second: Image.Image, tolerance: float = 12.0) -> bool:
    return rms_difference(first, second) <= tolerance
