"""Structure counted from the bytes and refused before any decoder runs."""

from __future__ import annotations

import time

import pytest

from phizer.errors import SourceTooLarge, TooComplex
from phizer.imaging.decode import open_image
from phizer.imaging.source import open_original
from phizer.imaging.structure import DecodeLimits, gif_frames, jpeg_scans, png_chunks
from tests.hostile_corpus import (
    gif_animated,
    gif_frames_1x1,
    jpeg,
    jpeg_scan_bomb,
    jpeg_segments,
    png,
    png_many_chunks,
)
from tests.imagetools import encode, photo

LIMITS = DecodeLimits(max_jpeg_scans=64, max_chunks=1000)
UNBOUNDED = DecodeLimits(max_jpeg_scans=10**9, max_chunks=10**9)


def sos_markers(data: bytes) -> int:
    # Our generated files hold the SOS byte pair nowhere but in their scans.
    return data.count(b"\xff\xda")


def test_repeated_scans_are_counted() -> None:
    base = sos_markers(jpeg_scan_bomb(0))
    assert base >= 2  # a progressive JPEG as encoders write them
    assert jpeg_scans(jpeg_scan_bomb(500), UNBOUNDED) == base + 500


def test_a_scan_bomb_is_refused_before_decoding() -> None:
    with pytest.raises(TooComplex, match="more than 64 scans") as refused:
        open_image(jpeg_scan_bomb(3000), limits=LIMITS)
    assert refused.value.status == 413
    assert isinstance(refused.value, SourceTooLarge)


def test_scans_just_within_the_limit_are_decoded() -> None:
    extra = LIMITS.max_jpeg_scans - sos_markers(jpeg_scan_bomb(0))
    fresh = open_original(jpeg_scan_bomb(extra), False, 1, False, limits=LIMITS)
    assert fresh.facts.size == (256, 256)
    with pytest.raises(TooComplex):
        open_image(jpeg_scan_bomb(extra + 1), limits=LIMITS)


def test_sos_bytes_outside_scans_are_not_counted() -> None:
    # Metadata between scans may hold the SOS byte pair: more of them than
    # the limit, so the scans are walked one by one.
    data = jpeg(progressive=True)
    app = b"\xff\xe5" + (2 + 200).to_bytes(2, "big") + b"\xff\xda" * 100
    last = data.rindex(b"\xff\xda")
    assert jpeg_scans(data[:last] + app + data[last:], LIMITS) == sos_markers(data)


@pytest.mark.parametrize(
    "data",
    [
        jpeg(),
        jpeg(progressive=True),
        encode(photo(300, 200, "L"), "JPEG", progressive=True),
        encode(photo(300, 200), "JPEG", subsampling=0, quality=95),
    ],
    ids=["baseline", "progressive", "grey-progressive", "baseline-444"],
)
def test_ordinary_jpegs_pass(data: bytes) -> None:
    assert 1 <= jpeg_scans(data, LIMITS) <= 20


def test_marker_segments_are_counted() -> None:
    with pytest.raises(TooComplex, match="marker segments"):
        open_image(jpeg_segments(0xE5, 1001), limits=LIMITS)
    assert open_image(jpeg_segments(0xE5, 900), limits=LIMITS).size == (64, 48)


def test_png_chunks_are_counted() -> None:
    assert (
        png_chunks(png_many_chunks(300), UNBOUNDED.max_chunks)
        - png_chunks(png_many_chunks(0), UNBOUNDED.max_chunks)
        == 300
    )
    with pytest.raises(TooComplex, match="more than 1000 chunks"):
        open_image(png_many_chunks(1000), limits=LIMITS)
    assert png_chunks(png(), LIMITS.max_chunks) < 10


def test_gif_blocks_before_the_first_frame_are_counted() -> None:
    with pytest.raises(TooComplex, match="GIF"):
        open_image(gif_frames_1x1(1, extensions=1000), limits=LIMITS)
    assert open_image(gif_frames_1x1(1, extensions=900), limits=LIMITS).size == (1, 1)


def test_gif_frames_are_counted_as_pillow_counts_them() -> None:
    data = gif_animated(30)
    assert gif_frames(data, 100, 1000) == 30
    assert gif_frames(data, 12, 1000) == 12


def test_gif_frames_past_max_frames_are_never_read() -> None:
    # Half a million frames: Pillow's own count reads through all of them
    # (seconds); only the first max_frames are looked at.
    data = gif_frames_1x1(500_000)
    started = time.perf_counter()
    fresh = open_original(data, True, 100, False, limits=LIMITS)
    assert fresh.facts.frames == 100
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    "data",
    [b"\xff\xd8", b"\xff\xd8\xff\xc4\xff", b"\x89PNG\r\n\x1a\n\x00\x00", b"GIF89a\x01\x00"],
    ids=["jpeg-soi-only", "jpeg-cut-segment", "png-cut-chunk", "gif-cut-screen"],
)
def test_damage_is_left_to_the_decoder(data: bytes) -> None:
    from phizer.errors import BadImage

    with pytest.raises(BadImage):
        open_image(data, limits=LIMITS)
