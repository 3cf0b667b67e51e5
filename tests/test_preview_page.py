"""The preview's pure parts: an original's facts, kept regions, parsing, the HTML."""

from __future__ import annotations

import io
import re
from dataclasses import replace

import pytest
from PIL import Image

from phizer.config.sizes import SizeSpec, parse_size_spec
from phizer.errors import BadImage, BadRequest, NotFound
from phizer.imaging.facts import OriginalFacts, read_facts
from phizer.imaging.geometry import Crop
from phizer.web.preview import parse_crop, parse_target, parse_view
from phizer.web.preview_model import (
    Preview,
    SizePreview,
    Variant,
    geometry_text,
    kept_region,
    read_variant,
)
from phizer.web.preview_page import INLINE_LIMIT, content_security_policy, render_page
from tests.icc_profiles import adobe_rgb_like
from tests.imagetools import encode, photo
from tests.preview_support import PreviewDom, read_image

MAX_DIMENSION = 3000


def spec(line: str, code: str = "x") -> SizeSpec:
    return parse_size_spec(code, line)[0]


def facts(width: int, height: int, orientation: int = 1) -> OriginalFacts:
    return OriginalFacts("JPEG", width, height, 1000, "RGB", False, orientation, 1)


def oriented_jpeg(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(photo(300, 200), "JPEG", exif=exif.tobytes(), icc_profile=adobe_rgb_like())


# --- facts -------------------------------------------------------------------------


def test_facts_of_an_oriented_jpeg_with_a_profile() -> None:
    data = oriented_jpeg(6)
    found = read_facts(data, 50_000_000)
    assert (found.image_format, found.width, found.height) == ("JPEG", 300, 200)
    assert found.upright == (200, 300)
    assert found.orientation == 6 and "90" in found.orientation_name
    assert found.nbytes == len(data)
    assert found.icc_bytes == len(adobe_rgb_like())
    assert found.icc_description == "Adobe RGB (1998) primaries, test copy"
    assert found.frames == 1 and not found.has_alpha


def test_facts_count_frames_and_see_alpha() -> None:
    # Distinct frames: an encoder may merge identical ones.
    frames = [photo(40, 30, "RGBA").rotate(90 * k) for k in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "PNG", save_all=True, append_images=frames[1:], duration=50)
    found = read_facts(buffer.getvalue(), 50_000_000)
    assert (found.image_format, found.frames, found.has_alpha) == ("PNG", 3, True)
    assert found.icc_bytes == 0 and found.icc_description is None
    assert found.upright == (40, 30)


def test_facts_refuse_what_is_not_an_image() -> None:
    with pytest.raises(BadImage):
        read_facts(b"not an image at all", 50_000_000)


def test_facts_survive_json_and_reject_other_json() -> None:
    found = read_facts(oriented_jpeg(3), 50_000_000)
    assert OriginalFacts.from_json(found.to_json()) == found
    for bad in ({}, {**found.to_json(), "extra": 1}, {**found.to_json(), "width": 0}):
        with pytest.raises(ValueError):
            OriginalFacts.from_json(bad)


# --- what a size keeps ---------------------------------------------------------------


def test_kept_region_in_percent_of_the_upright_original() -> None:
    landscape = facts(400, 300)
    # A square keeps the centred 300x300: from 50 to 350 across.
    assert kept_region(landscape, spec("150 square"), None, MAX_DIMENSION) == (12.5, 0, 75, 100)
    # Portrait 200x300 of a 400x300 source: full height, 200 of 400 across.
    assert kept_region(landscape, spec("200x300 portrait"), None, MAX_DIMENSION) == (
        25,
        0,
        50,
        100,
    )
    # A fitting size keeps everything: nothing to draw.
    assert kept_region(landscape, spec("100x100"), None, MAX_DIMENSION) is None
    # Crop points alone: 10% to 90% across, 10% to 80% down.
    crop = Crop(100, 100, 900, 800)
    assert kept_region(landscape, spec("100x100"), crop, MAX_DIMENSION) == pytest.approx(
        (10, 10, 80, 70)
    )


def test_kept_region_follows_the_exif_orientation() -> None:
    # Stored 300x400 but rotated: upright 400x300, so a square keeps the middle across.
    rotated = facts(300, 400, orientation=6)
    assert kept_region(rotated, spec("150 square"), None, MAX_DIMENSION) == (12.5, 0, 75, 100)


def test_sizes_at_max_dimension_keep_only_the_crop() -> None:
    source = facts(400, 300)
    big = spec("4000 square")
    assert kept_region(source, big, None, MAX_DIMENSION) is None
    assert kept_region(source, big, Crop(0, 0, 500, 1000), MAX_DIMENSION) == (0, 0, 50, 100)


def test_geometry_text_says_what_the_sizes_line_says() -> None:
    assert geometry_text(spec("96, 96 square quality=70")) == "96\u00d796 square quality=70"
    assert (
        geometry_text(spec("400x300 landscape format=webp quality=80 upscale=false"))
        == "400\u00d7300 landscape quality=80 format=webp upscale=false"
    )
    assert geometry_text(spec("640 x 480")) == "640\u00d7480 max"


def test_read_variant_reads_the_bytes_not_the_label() -> None:
    variant = read_variant("JPEG", encode(photo(64, 48), "WEBP"), "image/webp")
    assert (variant.image_format, variant.width, variant.height) == ("WEBP", 64, 48)
    broken = read_variant("JPEG", b"garbage", "image/jpeg")
    assert broken.error is not None and broken.width == 0


# --- what was asked ----------------------------------------------------------------


def test_parse_target_takes_the_path_and_one_crop() -> None:
    target = parse_target("/_preview/a/b%20c.jpg", None)
    assert (target.path, target.crop) == ("a/b c.jpg", None)
    in_path = parse_target("/_preview/100x0/900x1000/b.jpg", None)
    assert (in_path.path, in_path.crop) == ("b.jpg", Crop(100, 0, 900, 1000))
    in_query = parse_target("/_preview/b.jpg", "100x0/900x1000")
    assert in_query.crop == Crop(100, 0, 900, 1000)
    assert parse_target("/_preview/b.jpg", "").crop is None  # an empty form field
    with pytest.raises(BadRequest):
        parse_target("/_preview/100x0/900x1000/b.jpg", "0x0/10x10")
    for hostile in ("/_preview/../etc/passwd", "/_preview/a//b.jpg", "/_preview/%2e%2e/x"):
        with pytest.raises(BadRequest):
            parse_target(hostile, None)
    for empty in ("/_preview", "/_preview/"):
        with pytest.raises(NotFound):
            parse_target(empty, None)


def test_parse_crop_refuses_anything_but_two_points_in_range() -> None:
    assert parse_crop("0x0/1000x1000") == Crop(0, 0, 1000, 1000)
    for bad in ("", "1x1", "1x1/2x2/3x3", "0x0/1001x10", "5x5/5x9", "a/b", "1e3x0/1x1"):
        with pytest.raises(BadRequest):
            parse_crop(bad)


def test_parse_view() -> None:
    assert parse_view("WebP") == "webp"
    with pytest.raises(BadRequest):
        parse_view("gif")


# --- the page ----------------------------------------------------------------------

HOSTILE = "a/<script>alert(1)</script>\"'&.jpg"


def page(path: str = HOSTILE, view: str = "all") -> tuple[str, Preview]:
    size = spec("150 square", "sq150")
    served_bytes = encode(photo(150, 150), "JPEG")
    served = Variant("served", served_bytes, "image/jpeg", 150, 150, "JPEG", 85, 3.0, 2.0, "miss")
    webp = read_variant("WebP", encode(photo(150, 150), "WEBP"), "image/webp")
    preview = Preview(
        path=path,
        crop=Crop(0, 0, 1000, 900),
        view=view,
        facts=OriginalFacts("JPEG", 400, 300, 5000, "RGB", False, 1, 1, 10, "<b>icc</b>"),
        original_cache="miss",
        thumbnail=encode(photo(40, 30), "WEBP"),
        thumbnail_type="image/webp",
        served_offers=("AVIF", "WEBP"),
        sizes=(
            SizePreview(
                size,
                served,
                (Variant("JPEG", error="<i>boom</i>"), webp),
                (12.5, 0.0, 75.0, 90.0),
                False,
            ),
        ),
    )
    return render_page(preview, "n0nce"), preview


def test_every_value_is_escaped() -> None:
    html, _ = page()
    assert "<script>alert" not in html and "<b>icc" not in html and "<i>boom" not in html
    dom = PreviewDom(html)
    assert any(HOSTILE in text for text in dom.texts)  # shown, as text
    assert dom.facts["icc"].startswith("<b>icc</b>")
    assert "<i>boom</i>" in "".join(dom.texts)


def test_only_nonced_code_and_data_images() -> None:
    html, _ = page()
    dom = PreviewDom(html)
    assert [s.get("nonce") for s in dom.scripts] == ["n0nce"]
    assert [s.get("nonce") for s in dom.styles] == ["n0nce"]
    assert dom.images and all(img["src"].startswith("data:image/") for img in dom.images)
    assert "style" not in dom.attribute_names
    assert not [name for name in dom.attribute_names if name.startswith("on")]
    policy = content_security_policy("n0nce")
    assert "'nonce-n0nce'" in policy and "unsafe" not in policy
    assert re.search(r"default-src 'none'", policy)


def test_figures_carry_the_bytes_they_describe() -> None:
    html, preview = page()
    dom = PreviewDom(html)
    served = dom.figure("sq150", "served")
    assert served.data == preview.sizes[0].served.data
    assert served.shown_bytes == len(served.data)
    assert read_image(served.data) == ("JPEG", served.shown_dims)
    webp = dom.figure("sq150", "WebP")
    assert read_image(webp.data) == ("WEBP", webp.shown_dims)
    assert dom.cells[("sq150", "bytes", "WebP")] == f"{len(webp.data):,} B"
    # The kept region is a nonced rule, not an inline style.
    assert "#kept-0{left:12.500%;top:0.000%;width:75.000%;height:90.000%}" in html


def test_views_show_one_format_or_all() -> None:
    assert [f.variant for f in PreviewDom(page(view="all")[0]).figures] == [
        "served",
        "JPEG",
        "WebP",
    ]
    assert [f.variant for f in PreviewDom(page(view="webp")[0]).figures] == ["WebP"]
    assert [f.variant for f in PreviewDom(page(view="served")[0]).figures] == ["served"]


def test_images_past_the_inline_limit_are_described_not_embedded() -> None:
    _, preview = page(view="served")
    big = bytes(INLINE_LIMIT + 1)
    size = preview.sizes[0]
    served = Variant("served", big, "image/jpeg", 9000, 9000, "JPEG")
    html = render_page(replace(preview, sizes=(replace(size, served=served),)), "n")
    dom = PreviewDom(html)
    figure = dom.figure("sq150", "served")
    assert figure.img == {} and figure.caption["bytes"].startswith(f"{len(big):,} B")
    assert len(html) < INLINE_LIMIT // 100
