"""What a kept decode holds: plain pixels and the metadata kept for output,
all of it counted; never the parser's state."""

from __future__ import annotations

import gc
import io
import tracemalloc
from collections.abc import Iterator

import pytest
from PIL import Image, ImageFile

from phizer.config.sizes import parse_size_spec
from phizer.imaging.colour import MAX_KEPT_PROFILE
from phizer.imaging.decoded import DecodedOriginal, decode_once
from phizer.imaging.pipeline import OutputOptions, plan_for, render, render_from
from phizer.imaging.source import open_original
from tests.hostile_corpus import jpeg_segments, large_profile, mpo, png_ztxt
from tests.imagetools import decode, encode, photo

MIB = 1024 * 1024
SPECS = [parse_size_spec(code, raw)[0] for code, raw in (("s100", "100x100"), ("m400", "400x400"))]
BIG = parse_size_spec("big", "5000x5000")[0]
MAX_DIMENSION = 3000
# Python objects a kept decode may hold besides its pixels (which Pillow
# allocates outside Python's allocator): a few small objects, not the
# megabytes of segments and text the sources below carry.
SMALL = 64 * 1024


def kept(data: bytes, keep_metadata: bool = False) -> DecodedOriginal:
    return decode_once(open_original(data, False, 100, keep_metadata), SPECS, MAX_DIMENSION)


def retained(data: bytes) -> tuple[DecodedOriginal, int]:
    """The decode, and the bytes of Python objects left behind by making it."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        decoded = kept(data)
        gc.collect()
        return decoded, tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def reachable(root: object) -> Iterator[object]:
    seen: set[int] = set()
    pending = [root]
    while pending:
        item = pending.pop()
        if id(item) in seen or isinstance(item, type):
            continue
        seen.add(id(item))
        yield item
        pending.extend(gc.get_referents(item))


@pytest.mark.parametrize(
    "data",
    [
        jpeg_segments(0xE5, 5000, bytes(1000)),  # 5 MB of APP5 segments
        png_ztxt(10, MIB),  # 10 MB of text once inflated
    ],
    ids=["jpeg-app-segments", "png-ztxt"],
)
def test_a_kept_decode_holds_no_parser_state(data: bytes) -> None:
    decoded, leftover = retained(data)
    assert type(decoded.base) is Image.Image
    assert decoded.base.info == {}
    assert not any(isinstance(item, ImageFile.ImageFile) for item in reachable(decoded))
    assert leftover < SMALL, f"{leftover} bytes of Python objects kept beside the pixels"


def test_a_kept_decode_is_still_right() -> None:
    source = photo(800, 600)
    decoded = kept(encode(source, "PNG"))
    plan = plan_for(decoded.full_size, SPECS[1], None, MAX_DIMENSION)
    out = decode(render_from(decoded, plan, SPECS[1], OutputOptions()).data)
    assert out.size == (400, 300)


def test_metadata_kept_for_output_is_counted() -> None:
    exif = Image.Exif()
    exif[0x010E] = "x" * 20_000  # ImageDescription
    data = encode(photo(640, 480), "JPEG", exif=exif.tobytes(), comment=b"c" * 5000)
    stripped, carried = kept(data), kept(data, keep_metadata=True)
    metadata = carried.facts.metadata
    assert metadata.exif is not None and len(metadata.exif) > 20_000
    assert metadata.comment == b"c" * 5000
    assert carried.nbytes - stripped.nbytes == len(metadata.exif) + len(metadata.comment)


def test_a_large_profile_is_applied_once_and_not_kept() -> None:
    profile = large_profile(MAX_KEPT_PROFILE + 1)
    decoded = kept(encode(photo(640, 480), "JPEG", icc_profile=profile))
    assert decoded.facts.icc_profile is None
    assert decoded.nbytes <= 640 * 480 * 4  # the pixels, at most
    small = large_profile(4096)
    assert kept(encode(photo(640, 480), "JPEG", icc_profile=small)).facts.icc_profile == small


@pytest.mark.parametrize("size", [MAX_KEPT_PROFILE + 1, 2 * MIB])
def test_outputs_never_carry_a_large_profile(size: int) -> None:
    data = encode(photo(320, 240), "JPEG", icc_profile=large_profile(size))
    out = render(data, SPECS[0], None, OutputOptions(keep_icc=True))
    assert len(out.data) < 32 * 1024
    assert "icc_profile" not in Image.open(io.BytesIO(out.data)).info


def test_a_small_profile_is_kept() -> None:
    profile = large_profile(MAX_KEPT_PROFILE)
    data = encode(photo(320, 240), "JPEG", icc_profile=profile)
    out = render(data, SPECS[0], None, OutputOptions(keep_icc=True))
    assert Image.open(io.BytesIO(out.data)).info["icc_profile"] == profile


def test_mpo_is_served_as_jpeg_resized_and_untouched() -> None:
    data = mpo((640, 480))
    resized = render(data, SPECS[0], None, OutputOptions())
    assert resized.content_type == "image/jpeg"
    assert decode(resized.data).size == (100, 75)
    whole = render(data, BIG, None, OutputOptions(), max_dimension=MAX_DIMENSION)
    assert (whole.content_type, whole.data) == ("image/jpeg", data)
    assert kept(data).facts.format == "JPEG"
