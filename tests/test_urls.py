"""Request paths and worker routing (phizer/urls.py)."""

from __future__ import annotations

import unicodedata
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phizer.errors import BadRequest, NotFound, PhizerError, UriTooLong
from phizer.imaging.geometry import Crop
from phizer.web.protocol import worker_index
from phizer.web.urls import MAX_PATH_LENGTH, ImageRequest, parse_request_path


def test_resize_only():
    request = parse_request_path("/s220/photo.jpg")
    assert request == ImageRequest("s220", None, "photo.jpg")
    assert request.filename == "photo.jpg"


@pytest.mark.parametrize("size", ["S220", "s220", "S220".swapcase(), "s2S0".upper()])
def test_size_codes_are_lower_cased(size):
    assert parse_request_path(f"/{size}/a.jpg").size == size.lower()


def test_crop_points():
    request = parse_request_path("/s220/250x0/750x1000/photo.jpg")
    assert request.crop == Crop(250, 0, 750, 1000)
    assert request.path == "photo.jpg"


@pytest.mark.parametrize(
    ("raw", "crop"),
    [
        ("/s/0x0/1000x1000/a.jpg", Crop(0, 0, 1000, 1000)),
        ("/s/0x0/1x1/a.jpg", Crop(0, 0, 1, 1)),
        ("/s/999x999/1000x1000/a.jpg", Crop(999, 999, 1000, 1000)),
        ("/s/10x20/30x40/a.jpg", Crop(10, 20, 30, 40)),
        ("/s/0250x0/0750x1000/a.jpg", Crop(250, 0, 750, 1000)),
    ],
)
def test_valid_crops(raw, crop):
    assert parse_request_path(raw).crop == crop


@pytest.mark.parametrize(
    "raw",
    [
        "/s/0x0/box/a.jpg",
        "/s/0x0/photos/a.jpg",
        "/s/1x2/x/a.jpg",
        "/s/box/0x0/a.jpg",
        "/s/photos/0x0/a.jpg",
        "/s/x/1x2/a.jpg",
        "/s/2x/3x/a.jpg",
        "/s/2x/photo.jpg",
        "/s/box/photo.jpg",
        "/s/0x1f/0x2a/a.jpg",
        "/s/1e3x0/a.jpg",
        "/s/0x0/1000x1000",
        "/s/2012/06/a.jpg",
        "/s/0X0/1000X1000/a.jpg",
    ],
)
def test_a_crop_like_directory_name_is_still_a_path(raw):
    assert parse_request_path(raw).crop is None
    assert parse_request_path(raw).path == raw[3:]


def _read_as(raw: str) -> str:
    """How a path was taken: a crop (valid or not) or a plain path."""
    try:
        request = parse_request_path(raw)
    except BadRequest:
        return "crop"
    return "path" if request.crop is None else "crop"


_POINTS = st.sampled_from(
    [
        "0x0",
        "1000x1000",
        "1e3x0",
        "0x1e3",
        "999.5x1",
        "2x",
        "x2",
        "box",
        "x",
        "abcx0",
        "0xabc",
        "0x1f",
        "1x",
        "-1x-1",
        "+5x5",
        "10x20",
        "2012",
        "photo.jpg",
        "1.5x2",
        "3x4x5",
    ]
)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(_POINTS, _POINTS)
def test_crop_points_are_read_the_same_either_way_round(first, second):
    # Whether two segments are crop points never depends on which comes first.
    assert _read_as(f"/s/{first}/{second}/a.jpg") == _read_as(f"/s/{second}/{first}/a.jpg")


def test_crop_applies_before_a_nested_path():
    request = parse_request_path("/s/0x0/500x500/albums/2012/a.jpg")
    assert request.crop == Crop(0, 0, 500, 500)
    assert request.path == "albums/2012/a.jpg"
    assert request.filename == "a.jpg"


def test_nested_path():
    request = parse_request_path("/s100/a/b/c.jpg")
    assert request.crop is None
    assert request.path == "a/b/c.jpg"
    assert request.filename == "c.jpg"


@pytest.mark.parametrize("name", ["photo.JPG", "photo.Jpeg", "photo.webp", "photo", "a.b.c.png"])
def test_any_extension_or_none(name):
    assert parse_request_path(f"/s/{name}").path == name


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ("/s/caf%C3%A9.jpg", "café.jpg"),
        ("/s/caf%c3%a9.jpg", "café.jpg"),
        ("/s/café.jpg", "café.jpg"),
        ("/s/%E5%86%99%E7%9C%9F.jpg", "写真.jpg"),
        ("/s/my%20photo.jpg", "my photo.jpg"),
        ("/s/a+b.jpg", "a+b.jpg"),
        ("/s/a%2Bb.jpg", "a+b.jpg"),
        ("/s/100%25.jpg", "100%.jpg"),
        ("/s/dir%20one/%C3%BC.png", "dir one/ü.png"),
        ("/s/...jpg", "...jpg"),
        ("/s/..a/b.jpg", "..a/b.jpg"),
    ],
)
def test_percent_encoded_and_non_ascii_names(raw, path):
    assert parse_request_path(raw).path == path


@pytest.mark.parametrize(
    "raw",
    [
        "/s/../etc/passwd",
        "/s/a/../b.jpg",
        "/s/..",
        "/s/./a.jpg",
        "/s/%2e%2e/etc/passwd",
        "/s/%2E%2E/etc/passwd",
        "/s/.%2e/a.jpg",
        "/s/%2e/a.jpg",
        "/s/a%2fb.jpg",
        "/s/a%2Fb.jpg",
        "/s/..%2fetc%2fpasswd",
        "/s/%252e%252e/a.jpg",
        "/s/a%252fb.jpg",
        "/s/a%2500.jpg",
        "/s/a\\b.jpg",
        "/s/a%5cb.jpg",
        "/s/..%5c..%5cwin.ini",
        "/s/a%00.jpg",
        "/s/a\x00.jpg",
        "/s/a%0a.jpg",
        "/s/a%0d%0aSet-Cookie:x.jpg",
        "/s/a\t.jpg",
        "/s/a%1f.jpg",
        "/s/a%7f.jpg",
        "/s//a.jpg",
        "/s/a//b.jpg",
        "/s/a/",
        "/s/",
        "//a.jpg",
        "/s/%C3.jpg",
        "/s/%ff.jpg",
        "/s/%C0%AE%C0%AE/a.jpg",
        "s/a.jpg",
        "",
    ],
)
def test_hostile_paths_are_bad_requests(raw):
    with pytest.raises(BadRequest):
        parse_request_path(raw)


@pytest.mark.parametrize(
    "raw",
    ["/s/a%C2%85.jpg", "/s/a\x85.jpg", "/s/a%C2%80.jpg", "/s/a%C2%9F.jpg", "/s/a%C2%9B2J.jpg"],
)
def test_c1_control_characters_are_bad_requests(raw):
    # U+0080..U+009F are control characters too (NEL, CSI, ...), not just ASCII ones.
    with pytest.raises(BadRequest):
        parse_request_path(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "/s/0x0/1001x1000/a.jpg",
        "/s/0x0/1000x1001/a.jpg",
        "/s/500x0/500x1000/a.jpg",
        "/s/0x500/1000x500/a.jpg",
        "/s/750x0/250x1000/a.jpg",
        "/s/0x1000/1000x0/a.jpg",
        "/s/1000x1000/1000x1000/a.jpg",
        "/s/-1x0/1000x1000/a.jpg",
        "/s/0x-5/1000x1000/a.jpg",
        "/s/-500x-500/-1x-1/a.jpg",
        "/s/0x0/99999999999999999999x1000/a.jpg",
        "/s/0x0/1000x" + "9" * 400 + "/a.jpg",
        "/s/00000x0/1000x1000/a.jpg",
        "/s/0x0/0x0/a.jpg",
        "/s/0x0/1000xabc/a.jpg",
        "/s/0x0/1e3x1000/a.jpg",
        "/s/0x0/999.5x1000/a.jpg",
        "/s/1e3x0/1000x1000/a.jpg",
        "/s/999.5x0/1000x1000/a.jpg",
        "/s/abcx0/1000x1000/a.jpg",
        "/s/0x0/2x/a.jpg",
        "/s/2x/0x0/a.jpg",
        "/s/1e3x0/1e3x1000/a.jpg",
        "/s/0.5x0/1x1.5/a.jpg",
    ],
)
def test_bad_crops_are_bad_requests(raw):
    with pytest.raises(BadRequest):
        parse_request_path(raw)


@pytest.mark.parametrize("raw", ["/s", "/s220", "/_health/x", "/_/a.jpg", "/s-1/a.jpg"])
def test_not_an_image_path_is_not_found(raw):
    with pytest.raises(NotFound):
        parse_request_path(raw)


def test_size_code_too_long_is_not_found():
    with pytest.raises(NotFound):
        parse_request_path("/" + "s" * 33 + "/a.jpg")


def test_too_long():
    prefix = "/s/"
    ok = prefix + "a" * (MAX_PATH_LENGTH - len(prefix))
    assert parse_request_path(ok).path == "a" * (MAX_PATH_LENGTH - len(prefix))
    with pytest.raises(UriTooLong):
        parse_request_path(ok + "a")
    with pytest.raises(UriTooLong):
        parse_request_path("/s/" + "%2e" * 5000)


@pytest.mark.parametrize(
    "spellings",
    [
        ["/s220/photo.jpg", "/S220/photo.jpg", "/s220/%70hoto.jpg"],
        ["/s/café.jpg", "/s/caf%C3%A9.jpg", "/s/caf%c3%a9.jpg", "/S/caf%C3%a9.jpg"],
        ["/s/a+b.jpg", "/s/a%2Bb.jpg", "/s/a%2bb.jpg"],
        ["/s/my photo.jpg", "/s/my%20photo.jpg"],
        ["/s/250x0/750x1000/a.jpg", "/S/0250x000/750x1000/a.jpg", "/s/+250x0/750x1000/a.jpg"],
        ["/s/a/b/c.jpg", "/s/%61/b/c%2Ejpg"],
    ],
)
def test_key_is_canonical(spellings):
    keys = {parse_request_path(raw).key for raw in spellings}
    assert len(keys) == 1


def test_key_round_trips():
    for raw in [
        "/s220/photo.jpg",
        "/s/250x0/750x1000/a/b.jpg",
        "/s/caf%C3%A9%20x.jpg",
        "/s/100%25.jpg",
        "/s/a%3Fb%23c.jpg",
    ]:
        request = parse_request_path(raw)
        assert parse_request_path(request.key) == request


def test_key_examples():
    assert parse_request_path("/S220/photo.jpg").key == "/s220/photo.jpg"
    assert parse_request_path("/s/250x0/750x1000/a/b.jpg").key == "/s/250x0/750x1000/a/b.jpg"
    assert parse_request_path("/s/café x.jpg").key == "/s/caf%C3%A9%20x.jpg"


def test_key_differs_with_crop_and_size():
    keys = {
        parse_request_path(raw).key
        for raw in ["/s/a.jpg", "/m/a.jpg", "/s/0x0/500x500/a.jpg", "/s/0x0/500x501/a.jpg"]
    }
    assert len(keys) == 4


@pytest.mark.parametrize("name", ["hello", "photo.jpg", "café.jpg", "写真.png", ""])
@pytest.mark.parametrize("workers", [1, 2, 3, 7, 16])
def test_worker_index_is_crc32_of_the_name(name, workers):
    index = worker_index(name, workers)
    assert index == zlib.crc32(name.encode("utf-8")) % workers
    assert 0 <= index < workers


def test_worker_index_is_stable():
    # crc32(b"hello") == 0x3610A686; a fixed value, not just self-consistency.
    assert worker_index("hello", 1000) == 907060870 % 1000 == 870
    assert worker_index("hello", 7) == 907060870 % 7
    assert [worker_index("photo.jpg", 5) for _ in range(3)] == [worker_index("photo.jpg", 5)] * 3


def test_worker_index_spreads_names():
    indexes = {worker_index(f"photo-{n}.jpg", 4) for n in range(100)}
    assert indexes == {0, 1, 2, 3}


def test_all_sizes_of_one_original_go_to_one_worker():
    raws = ["/s/a/b/photo.jpg", "/m/0x0/500x500/a/b/photo.jpg", "/l/other/photo.jpg"]
    assert {parse_request_path(raw).filename for raw in raws} == {"photo.jpg"}


_TOKENS = st.sampled_from(
    [
        "a",
        "b.jpg",
        ".",
        "..",
        "%2e",
        "%2E",
        "%2f",
        "%5c",
        "\\",
        "%00",
        "\x00",
        "%0a",
        "\n",
        "%1f",
        "%7f",
        "%C2%85",
        "\x85",
        "%25",
        "%252e",
        "%",
        "%c3%a9",
        "%c3",
        "é",
        "x",
        "0",
        "1000",
        "-1",
        " ",
        "+",
    ]
)
_SEGMENT = st.lists(_TOKENS, min_size=0, max_size=4).map("".join)
_STRUCTURED = st.builds(
    lambda size, segments: "/" + "/".join([size, *segments]),
    st.sampled_from(["s1", "S1", "_health", "", "%73"]),
    st.lists(_SEGMENT, min_size=1, max_size=5),
)


def _is_control(char: str) -> bool:
    return unicodedata.category(char) == "Cc"


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.one_of(st.text(max_size=60), _STRUCTURED))
def test_parse_never_lets_hostile_paths_through(raw):
    try:
        request = parse_request_path(raw)
    except PhizerError:
        return
    segments = request.path.split("/")
    assert all(segment not in ("", ".", "..") for segment in segments)
    assert "\\" not in request.path
    assert not any(_is_control(char) for char in request.path)
    assert request.crop is None or (
        0 <= request.crop.left < request.crop.right <= 1000
        and 0 <= request.crop.top < request.crop.bottom <= 1000
    )
    assert parse_request_path(request.key) == request
