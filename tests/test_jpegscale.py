"""JPEG decoding at 3/8 scale (phizer.jpegscale)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from phizer.imaging import jpegscale
from tests.imagetools import encode, photo, ssim

LANCZOS = Image.Resampling.LANCZOS


def _opened(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def _drafted(data: bytes, wanted: tuple[int, int]) -> Image.Image:
    image = _opened(data)
    jpegscale.draft(image, wanted)
    image.load()
    return image


def test_this_pillow_decodes_at_three_eighths() -> None:
    assert jpegscale.three_eighths_works()


@pytest.mark.parametrize("divisor", [1, 2, 4])
def test_the_probe_tells_other_scales_apart(divisor: int) -> None:
    # What a Pillow or libjpeg that did not give 3/8 for a divisor of 3
    # would decode; the probe must refuse it.
    assert not jpegscale.rows_come_at_three_eighths(divisor)


@pytest.mark.parametrize(
    ("size", "mode", "params"),
    [
        ((3200, 2400), "RGB", {}),
        ((3201, 2399), "RGB", {"progressive": True}),  # not whole blocks
        ((2400, 3203), "L", {}),
        ((3200, 2400), "CMYK", {}),
        ((3200, 2400), "RGB", {"subsampling": 0}),  # 4:4:4
    ],
)
def test_three_eighths_where_half_would_be_picked(
    size: tuple[int, int], mode: str, params: dict[str, object]
) -> None:
    source = photo(*size).convert(mode)
    data = encode(source, "JPEG", quality=95, **params)
    wanted = (size[0] * 3 // 10, size[1] * 3 // 10)  # Pillow's draft would pick 1/2
    image = _drafted(data, wanted)
    reduced = (-(-size[0] * 3 // 8), -(-size[1] * 3 // 8))
    assert image.size == reduced
    assert image.mode == mode
    assert image.width >= wanted[0] and image.height >= wanted[1]
    # The same picture as a full decode brought to that size.
    reference = _opened(data).convert("RGB").resize(reduced, LANCZOS)
    assert ssim(image.convert("RGB"), reference) > 0.95


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        ((1300, 980), (1600, 1200)),  # 3/8 (1200 x 900) is too small: 1/2
        ((800, 600), (800, 600)),  # 1/4, Pillow's own
        ((1700, 1300), (3200, 2400)),  # full size
        ((400, 300), (400, 300)),  # 1/8
    ],
)
def test_pillows_scales_otherwise(wanted: tuple[int, int], expected: tuple[int, int]) -> None:
    data = encode(photo(3200, 2400), "JPEG", quality=90)
    assert _drafted(data, wanted).size == expected


def test_only_an_unloaded_single_tile_jpeg_is_rescaled() -> None:
    png = _opened(encode(photo(3200, 2400), "PNG"))
    jpegscale.draft(png, (1000, 750))
    assert png.size == (3200, 2400)
    # A JPEG already drafted keeps what it was given.
    jpeg = _opened(encode(photo(3200, 2400), "JPEG"))
    jpeg.draft(None, (1600, 1200))
    jpegscale.draft(jpeg, (1000, 750))
    jpeg.load()
    assert jpeg.size == (1600, 1200)
