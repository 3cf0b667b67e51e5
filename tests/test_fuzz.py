"""Bounded fuzzing of the two places hostile bytes reach: the URL parser and the decoder.

Both must either succeed with a safe result or raise a ``PhizerError``
(which becomes a status); any other exception would be a 500, and a hang
would pin a worker. Examples are capped and derandomized so the file runs
in a few seconds and fails the same way twice.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from phizer.config.sizes import Constraint, SizeSpec
from phizer.errors import PhizerError
from phizer.imaging.decode import set_pixel_limit
from phizer.imaging.formats import ALLOWED_FORMATS, CONTENT_TYPES
from phizer.imaging.geometry import CROP_SCALE, Crop
from phizer.imaging.pipeline import OutputOptions, render
from phizer.web.urls import ImageRequest, parse_request_path
from tests.imagetools import encode, photo

FUZZ = settings(
    max_examples=400,
    deadline=timedelta(seconds=2),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
FUZZ_DECODE = settings(FUZZ, max_examples=600)
# Far below Pillow's default: a flipped header byte may declare a large
# canvas, and the decoder must refuse it rather than spend seconds on it.
MAX_PIXELS = 1_000_000
REFUSAL_STATUSES = {400, 404, 414}


def _is_control(char: str) -> bool:
    return ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F


# --------------------------------------------------------------------------
# URLs


# Pieces that are fine alone and dangerous in combination, or dangerous alone.
_PLAIN = ["a", "photo", ".jpg", "~", "+", " ", "é", "图", "0x0", "1000x1000"]
_DOTS_AND_SLASHES = [".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "\\"]
_ESCAPES = ["%25", "%252e", "%252f", "%c3%a9", "%", "%z", "%e2%82", "%c0%af", "%ff"]
_CONTROLS = ["%00", "%0a", "%0d", "%7f", "%c2%85", "\x00", "\x85", "\x7f", "\t"]
_URL_SYNTAX = ["?", "#", ";", "="]
_PIECES = _PLAIN + _DOTS_AND_SLASHES + _ESCAPES + _CONTROLS + _URL_SYNTAX
_SIZES = st.one_of(
    st.from_regex(r"[A-Za-z0-9]{1,6}", fullmatch=True),
    st.sampled_from(["s100", "S100", "%73100", "s-1", "", "a" * 33, "é", "%2e%2e", ".."]),
)
_NUMBERS = st.one_of(
    st.integers(-5, CROP_SCALE + 5).map(str),
    st.sampled_from(["", "-0", "+5", "00001", "99999", "9" * 40, "1e3", "0x10", "\uff15"]),
)
_CROP_POINTS = st.builds(lambda x, y: f"{x}x{y}", _NUMBERS, _NUMBERS)
_SEGMENTS = st.lists(st.sampled_from(_PIECES), min_size=0, max_size=4).map("".join)


@st.composite
def near_valid_paths(draw: st.DrawFn) -> str:
    size = draw(_SIZES)
    crop = draw(st.lists(_CROP_POINTS, max_size=2))
    segments = draw(st.lists(_SEGMENTS, min_size=1, max_size=4))
    return "/" + "/".join([size, *crop, *segments])


def check_parse(raw: str) -> ImageRequest | None:
    """The parser's contract on any input; returns the request when accepted."""
    try:
        request = parse_request_path(raw)
    except PhizerError as err:
        assert err.status in REFUSAL_STATUSES, (raw, err.status)
        return None
    segments = request.path.split("/")
    assert all(segment not in ("", ".", "..") for segment in segments), (raw, request)
    assert "\\" not in request.path, (raw, request)
    assert not any(_is_control(char) for char in request.path), (raw, request)
    assert request.size == unquote(raw[1:].split("/")[0]).lower(), (raw, request)
    if request.crop is not None:
        crop = request.crop
        assert 0 <= crop.left < crop.right <= CROP_SCALE, (raw, crop)
        assert 0 <= crop.top < crop.bottom <= CROP_SCALE, (raw, crop)
    # The front asks the worker for ``key``; the worker must read the same request.
    assert parse_request_path(request.key) == request, (raw, request.key)
    return request


@FUZZ
@given(st.one_of(st.text(max_size=120), st.text(max_size=120).map(lambda t: "/" + t)))
def test_parse_arbitrary_text(raw: str) -> None:
    check_parse(raw)


@FUZZ
@given(near_valid_paths())
def test_parse_near_valid_paths(raw: str) -> None:
    check_parse(raw)


_SAFE_NAME = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\%"),
    min_size=1,
    max_size=12,
).filter(lambda name: name not in (".", "..") and not any(_is_control(c) for c in name))


@FUZZ
@given(st.lists(_SAFE_NAME, min_size=1, max_size=4))
def test_clean_names_are_accepted(names: list[str]) -> None:
    """The other half of the contract: legitimate names (any script) are not refused."""
    raw = "/s100/" + "/".join(quote(name, safe="") for name in names)
    request = check_parse(raw)
    assert request is not None, raw
    assert request.path == "/".join(names)


# --------------------------------------------------------------------------
# Decoding


def _seed_images() -> dict[str, bytes]:
    small = photo(24, 16)
    frames = [small.quantize(32), small.rotate(180).quantize(32)]
    animated = io.BytesIO()
    frames[0].save(animated, "GIF", save_all=True, append_images=frames[1:], duration=50)
    return {
        "JPEG": encode(small, "JPEG", quality=80),
        "JPEG-progressive": encode(small, "JPEG", quality=80, progressive=True),
        "PNG": encode(photo(24, 16, "RGBA"), "PNG"),
        "PNG-palette": encode(small.quantize(16), "PNG", transparency=0),
        "GIF": encode(small, "GIF"),
        "GIF-animated": animated.getvalue(),
        "WEBP": encode(small, "WEBP", quality=80),
    }


SEEDS = _seed_images()
SPECS = [
    SizeSpec("s", 32, 32),
    SizeSpec("q", 20, 20, Constraint.SQUARE),
    SizeSpec("p", 10, 30, Constraint.PORTRAIT),
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A seed image after a few byte flips, insertions, overwrites and a cut."""
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[at] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, draw(st.integers(0, 255))]))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif data:
            del data[at : at + draw(st.integers(1, 64))]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@pytest.fixture(scope="module", autouse=True)
def _pillow_limit() -> Iterator[None]:
    # As a worker does once at start; other tests expect Pillow's default.
    saved = Image.MAX_IMAGE_PIXELS
    set_pixel_limit(MAX_PIXELS)
    yield
    Image.MAX_IMAGE_PIXELS = saved


@FUZZ_DECODE
@given(
    mutated(),
    st.sampled_from(SPECS),
    st.sampled_from([None, Crop(100, 200, 900, 800)]),
    st.booleans(),
)
def test_render_mutated_images(
    data: bytes, spec: SizeSpec, crop: Crop | None, resize: bool
) -> None:
    try:
        rendered = render(
            data,
            spec,
            crop,
            OutputOptions(),
            max_dimension=3000 if resize else 1,
            max_pixels=MAX_PIXELS,
        )
    except PhizerError:
        return
    with Image.open(io.BytesIO(rendered.data)) as image:
        assert image.format in ALLOWED_FORMATS
        assert rendered.content_type == CONTENT_TYPES[image.format]
        if rendered.data != data:  # re-encoded by phizer, not the original passed through
            image.load()


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seed_images_render(name: str) -> None:
    """The fuzzing starts from images that really work, else it proves nothing."""
    rendered = render(SEEDS[name], SPECS[0], None, OutputOptions(), max_pixels=MAX_PIXELS)
    with Image.open(io.BytesIO(rendered.data)) as image:
        assert image.size == (32, 21)
