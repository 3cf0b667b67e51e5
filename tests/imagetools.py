"""Synthetic test images and tolerant comparisons (never byte equality)."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageChops, ImageDraw, ImageMath, ImageStat


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


# SSIM's stabilising constants for 8-bit samples (Wang et al. 2004).
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def ssim(first: Image.Image, second: Image.Image, window: int = 8) -> float:
    """Mean structural similarity of the luma channels, over ``window`` x
    ``window`` squares placed every ``window // 2`` pixels; 1.0 is identical.

    Window means come from exact box reductions of float images, so no
    numpy is needed.
    """
    a = first.convert("L")
    b = second.convert("L")
    if b.size != a.size:
        b = b.resize(a.size, Image.Resampling.LANCZOS)
    x, y = a.convert("F"), b.convert("F")
    planes = {
        "x": x,
        "y": y,
        "xx": ImageMath.lambda_eval(lambda v: v["x"] * v["x"], x=x),
        "yy": ImageMath.lambda_eval(lambda v: v["y"] * v["y"], y=y),
        "xy": ImageMath.lambda_eval(lambda v: v["x"] * v["y"], x=x, y=y),
    }
    step = max(1, window // 2)
    total, count = 0.0, 0
    for dx in range(0, window, step):
        for dy in range(0, window, step):
            columns = (a.width - dx) // window
            rows = (a.height - dy) // window
            if columns < 1 or rows < 1:
                continue
            box = (dx, dy, dx + columns * window, dy + rows * window)
            means = {
                name: plane.crop(box).resize((columns, rows), Image.Resampling.BOX)
                for name, plane in planes.items()
            }
            scores = ImageMath.lambda_eval(_ssim_map, **means)
            mean = scores.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
            total += mean * columns * rows
            count += columns * rows
    if count == 0:
        raise ValueError("images smaller than one SSIM window")
    return total / count


def _ssim_map(v: dict[str, Any]) -> Any:
    mx, my = v["x"], v["y"]
    var_x = v["xx"] - mx * mx
    var_y = v["yy"] - my * my
    cov = v["xy"] - mx * my
    return ((2 * mx * my + _C1) * (2 * cov + _C2)) / (
        (mx * mx + my * my + _C1) * (var_x + var_y + _C2)
    )
