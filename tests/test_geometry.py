"""Resize geometry (phizer/imaging/geometry.py); every expected number is worked out by
hand from the constraints the README's "URLs" section describes."""

from __future__ import annotations

import pytest

from phizer.config.sizes import Constraint, SizeSpec, parse_size_spec
from phizer.imaging.geometry import (
    Crop,
    ResizePlan,
    crop_box,
    draft_size,
    exceeds,
    is_reduction,
    plan_crop_only,
    plan_resize,
    scale_box,
)

MAX, SQUARE, PORTRAIT, LANDSCAPE = (
    Constraint.MAX,
    Constraint.SQUARE,
    Constraint.PORTRAIT,
    Constraint.LANDSCAPE,
)


def spec(width: int, height: int, constraint: Constraint = MAX) -> SizeSpec:
    return SizeSpec("t", width, height, constraint)


def approx_box(box):
    return pytest.approx(box, abs=1e-6)


# --- max -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        # scale = min(220/1024, 220/768) = 0.2148...; 768 * 0.2148 = 165
        ((1024, 768), (220, 220), (220, 165)),
        ((768, 1024), (220, 220), (165, 220)),
        # min(300/1024, 200/768) = 0.2604; 1024 * 0.2604 = 266.67 -> 266
        ((1024, 768), (300, 200), (266, 200)),
        ((4000, 3000), (200, 200), (200, 150)),
        # 2000 * 100/3000 = 66.67 -> 66
        ((3000, 2000), (100, 100), (100, 66)),
        ((1000, 1000), (640, 480), (480, 480)),
        ((640, 480), (640, 480), (640, 480)),
        # small images are scaled up: min(100/50, 100/25) = 2
        ((50, 25), (100, 100), (100, 50)),
        ((1, 1), (100, 100), (100, 100)),
        ((30, 40), (300, 300), (225, 300)),
    ],
)
def test_max(source, target, expected):
    plan = plan_resize(*source, spec(*target))
    assert plan.size == expected
    assert plan.box == approx_box((0, 0, *source))


# --- square ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "side", "box"),
    [
        # centre square of side 768: (1024 - 768) / 2 = 128 on each side
        ((1024, 768), 150, (128, 0, 896, 768)),
        ((768, 1024), 150, (0, 128, 768, 896)),
        ((300, 300), 100, (0, 0, 300, 300)),
        ((101, 100), 100, (0.5, 0, 100.5, 100)),
        # small sources grow as well
        ((40, 20), 100, (10, 0, 30, 20)),
    ],
)
def test_square(source, side, box):
    plan = plan_resize(*source, spec(side, side, SQUARE))
    assert plan.size == (side, side)
    assert plan.box == approx_box(box)


def test_square_with_unequal_sides_uses_the_larger():
    square, _ = parse_size_spec("sq", "100x200 square")
    plan = plan_resize(400, 300, square)
    assert plan.size == (200, 200)
    assert plan.box == approx_box((50, 0, 350, 300))


# --- portrait --------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "target", "size", "box"),
    [
        # height -> 300 makes the width 1024 * 300/768 = 400 > 200: keep
        # 200 * 768/300 = 512 source columns, (1024 - 512)/2 = 256 from each side
        ((1024, 768), (200, 300), (200, 300), (256, 0, 768, 768)),
        # 600 * 300/1200 = 150 <= 200: nothing cropped
        ((600, 1200), (200, 300), (150, 300), (0, 0, 600, 1200)),
        # 400 * 300/600 = 200: exactly fits
        ((400, 600), (200, 300), (200, 300), (0, 0, 400, 600)),
        # scaled up: 50 * 300/100 = 150
        ((50, 100), (200, 300), (150, 300), (0, 0, 50, 100)),
        # square source: 1000 * 300/1000 = 300 > 200, keep 200*1000/300 = 666.67
        ((1000, 1000), (200, 300), (200, 300), (166.6666667, 0, 833.3333333, 1000)),
    ],
)
def test_portrait(source, target, size, box):
    plan = plan_resize(*source, spec(*target, PORTRAIT))
    assert plan.size == size
    assert plan.box == pytest.approx(box, abs=1e-4)


# --- landscape -------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "target", "size", "box"),
    [
        # width -> 300 makes the height 1024 * 300/768 = 400 > 200: keep
        # 200 * 768/300 = 512 source rows, (1024 - 512)/2 = 256 from top and bottom
        ((768, 1024), (300, 200), (300, 200), (0, 256, 768, 768)),
        # 600 * 300/1200 = 150 <= 200: nothing cropped
        ((1200, 600), (300, 200), (300, 150), (0, 0, 1200, 600)),
        # 768 * 300/1024 = 225 > 200: keep 200 * 1024/300 = 682.67 rows,
        # (768 - 682.67)/2 = 42.67 from top and bottom
        ((1024, 768), (300, 200), (300, 200), (0, 42.6666667, 1024, 725.3333333)),
        # scaled up: 20 * 300/100 = 60
        ((100, 20), (300, 200), (300, 60), (0, 0, 100, 20)),
    ],
)
def test_landscape(source, target, size, box):
    plan = plan_resize(*source, spec(*target, LANDSCAPE))
    assert plan.size == size
    assert plan.box == pytest.approx(box, abs=1e-4)


# --- upscale=false ------------------------------------------------------------


def no_upscale(width: int, height: int, constraint: Constraint = MAX) -> SizeSpec:
    return SizeSpec("t", width, height, constraint, upscale=False)


@pytest.mark.parametrize(
    ("source", "target", "size", "box"),
    [
        # max: 50x25 fits 100x100 as it is
        ((50, 25), no_upscale(100, 100), (50, 25), (0, 0, 50, 25)),
        # max: exactly the target's size
        ((100, 100), no_upscale(100, 100), (100, 100), (0, 0, 100, 100)),
        # max: one side larger than the target still scales down, min(1, 100/200) = 0.5
        ((50, 200), no_upscale(100, 100), (25, 100), (0, 0, 50, 200)),
        # square: the centre 20x20 of a 40x20 source stays 20x20 for a 100 square
        ((40, 20), no_upscale(100, 100, SQUARE), (20, 20), (10, 0, 30, 20)),
        # square: larger sources still shrink to the target
        ((400, 300), no_upscale(100, 100, SQUARE), (100, 100), (50, 0, 350, 300)),
        # portrait: height stays 80 (not 300); width 100 <= 150 is kept whole
        ((100, 80), no_upscale(150, 300, PORTRAIT), (100, 80), (0, 0, 100, 80)),
        # portrait: height stays 80; the 400 columns are cropped to the middle 150
        ((400, 80), no_upscale(150, 300, PORTRAIT), (150, 80), (125, 0, 275, 80)),
        # portrait: a taller source still scales to height 300 (600*300/1200 = 150)
        ((600, 1200), no_upscale(200, 300, PORTRAIT), (150, 300), (0, 0, 600, 1200)),
        # landscape: width stays 100; 20 <= 200 rows kept whole
        ((100, 20), no_upscale(300, 200, LANDSCAPE), (100, 20), (0, 0, 100, 20)),
        # landscape: width stays 100; 500 rows cropped to the middle 200
        ((100, 500), no_upscale(300, 200, LANDSCAPE), (100, 200), (0, 150, 100, 350)),
    ],
)
def test_no_upscale_keeps_the_source_scale(source, target, size, box):
    plan = plan_resize(*source, target)
    assert plan.size == size
    assert plan.box == pytest.approx(box, abs=1e-4)
    assert plan.scale <= 1


def test_no_upscale_applies_to_the_crop_region():
    # the crop keeps 256..768 x 0..768 (512x768), smaller than 1000x1000: kept at scale 1
    plan = plan_resize(1024, 768, no_upscale(1000, 1000), Crop(250, 0, 750, 1000))
    assert plan.box == approx_box((256, 0, 768, 768))
    assert plan.size == (512, 768)


@pytest.mark.parametrize("source", [(1, 1), (3, 20000), (37, 11), (900, 40)])
@pytest.mark.parametrize("constraint", [MAX, SQUARE, PORTRAIT, LANDSCAPE])
def test_no_upscale_never_grows(source, constraint):
    target = no_upscale(500, 500, constraint)
    plan = plan_resize(*source, target)
    left, top, right, bottom = plan.box
    assert plan.size[0] <= round(right - left) and plan.size[1] <= round(bottom - top)
    assert plan.size[0] >= 1 and plan.size[1] >= 1


# --- crop points -----------------------------------------------------------


def test_crop_points_keep_the_middle_half():
    # SPEC example: 250x0/750x1000 on 1024x768 keeps columns 256..768.
    assert crop_box(1024, 768, Crop(250, 0, 750, 1000)) == (256, 0, 768, 768)


def test_crop_then_max():
    # the 512x768 middle half fits 220x220 as 512*220/768 = 146.67 -> 146 x 220
    plan = plan_resize(1024, 768, spec(220, 220), Crop(250, 0, 750, 1000))
    assert plan.box == approx_box((256, 0, 768, 768))
    assert plan.size == (146, 220)


def test_crop_then_square():
    # square of side 512 centred in 256..768 x 0..768: rows 128..640
    plan = plan_resize(1024, 768, spec(100, 100, SQUARE), Crop(250, 0, 750, 1000))
    assert plan.box == approx_box((256, 128, 768, 640))
    assert plan.size == (100, 100)


def test_crop_then_portrait():
    # 512x768 at height 300 is 200 wide: fits exactly, nothing more cropped
    plan = plan_resize(1024, 768, spec(200, 300, PORTRAIT), Crop(250, 0, 750, 1000))
    assert plan.box == approx_box((256, 0, 768, 768))
    assert plan.size == (200, 300)


def test_crop_then_landscape():
    # 512x768 at width 300 is 450 tall > 200: keep 200*512/300 = 341.33 rows
    # centred in 0..768: (768 - 341.33)/2 = 213.33
    plan = plan_resize(1024, 768, spec(300, 200, LANDSCAPE), Crop(250, 0, 750, 1000))
    assert plan.box == pytest.approx((256, 213.3333333, 768, 554.6666667), abs=1e-4)
    assert plan.size == (300, 200)


def test_crop_top_left_quarter():
    plan = plan_resize(1000, 800, spec(100, 100), Crop(0, 0, 500, 500))
    assert plan.box == approx_box((0, 0, 500, 400))
    assert plan.size == (100, 80)


@pytest.mark.parametrize(
    ("size", "crop", "box"),
    [
        ((1024, 768), None, (0, 0, 1024, 768)),
        ((1024, 768), Crop(0, 0, 1000, 1000), (0, 0, 1024, 768)),
        # int(333 * 500 / 1000) = int(166.5) = 166
        ((333, 333), Crop(500, 500, 1000, 1000), (166, 166, 333, 333)),
        ((1000, 500), Crop(100, 200, 300, 400), (100, 100, 300, 200)),
        # sub-pixel crops still keep one pixel
        ((10, 10), Crop(0, 0, 1, 1), (0, 0, 1, 1)),
        ((10, 10), Crop(999, 999, 1000, 1000), (9, 9, 10, 10)),
        ((1, 1), Crop(500, 500, 1000, 1000), (0, 0, 1, 1)),
        ((1, 1), Crop(0, 0, 1, 1), (0, 0, 1, 1)),
    ],
)
def test_crop_box(size, crop, box):
    assert crop_box(*size, crop) == box


def test_crop_only():
    plan = plan_crop_only(1024, 768, Crop(250, 0, 750, 1000))
    assert plan.box == approx_box((256, 0, 768, 768))
    assert plan.size == (512, 768)
    assert plan_crop_only(640, 480, None).size == (640, 480)


# --- never below one pixel ---------------------------------------------------

EXTREME_SOURCES = [(10000, 1), (1, 10000), (1, 1), (3, 20000), (20000, 3), (2, 1)]
EXTREME_SPECS = [
    spec(100, 100),
    spec(1, 1),
    spec(100, 100, SQUARE),
    spec(100, 200, PORTRAIT),
    spec(1, 5000, PORTRAIT),
    spec(200, 100, LANDSCAPE),
    spec(5000, 1, LANDSCAPE),
]
EXTREME_CROPS = [None, Crop(0, 0, 1, 1), Crop(999, 0, 1000, 1000), Crop(0, 999, 1000, 1000)]


@pytest.mark.parametrize("source", EXTREME_SOURCES)
@pytest.mark.parametrize("target", EXTREME_SPECS)
@pytest.mark.parametrize("crop", EXTREME_CROPS)
def test_extreme_aspect_ratios_stay_valid(source, target, crop):
    plan = plan_resize(*source, target, crop)
    width, height = plan.size
    assert width >= 1 and height >= 1
    assert width <= target.width and height <= target.height
    left, top, right, bottom = plan.box
    assert 0 <= left < right <= source[0]
    assert 0 <= top < bottom <= source[1]


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        ((10000, 1), spec(100, 100), (100, 1)),
        ((1, 10000), spec(100, 100), (1, 100)),
        ((10000, 1), spec(100, 200, PORTRAIT), (100, 200)),
        ((1, 10000), spec(100, 200, PORTRAIT), (1, 200)),
        ((10000, 1), spec(200, 100, LANDSCAPE), (200, 1)),
        ((1, 10000), spec(200, 100, LANDSCAPE), (200, 100)),
        ((10000, 1), spec(50, 50, SQUARE), (50, 50)),
    ],
)
def test_extreme_aspect_ratio_sizes(source, target, expected):
    assert plan_resize(*source, target).size == expected


# --- draft size --------------------------------------------------------------


def test_draft_size_keeps_twice_the_output():
    plan = plan_resize(4000, 3000, spec(200, 200))
    assert plan.size == (200, 150)
    # scale 0.05, doubled: decode at 1/10
    assert draft_size(4000, 3000, plan) == (400, 300)
    assert draft_size(4000, 3000, plan, headroom=1.0) == (200, 150)


def test_draft_size_with_a_crop_counts_the_box_only():
    plan = plan_resize(4000, 3000, spec(100, 100), Crop(0, 0, 500, 500))
    assert plan.size == (100, 75)
    # the 2000x1500 box must keep 200x150 pixels: the whole image at 1/10
    assert draft_size(4000, 3000, plan) == (400, 300)


def test_draft_size_never_exceeds_the_source():
    plan = plan_resize(50, 25, spec(100, 100))
    assert draft_size(50, 25, plan) == (50, 25)
    near = plan_resize(1000, 1000, spec(600, 600))
    assert draft_size(1000, 1000, near) == (1000, 1000)


@pytest.mark.parametrize(
    ("source", "target", "crop"),
    [
        ((4000, 3000), spec(200, 200), None),
        ((3000, 4000), spec(150, 150, SQUARE), None),
        ((5000, 1000), spec(200, 300, PORTRAIT), None),
        ((1000, 5000), spec(300, 200, LANDSCAPE), None),
        ((6000, 4000), spec(100, 100), Crop(250, 0, 750, 1000)),
        ((6000, 4000), spec(64, 64, SQUARE), Crop(100, 100, 200, 300)),
        ((10000, 3), spec(100, 100), None),
    ],
)
def test_draft_box_keeps_at_least_twice_the_output(source, target, crop):
    plan = plan_resize(*source, target, crop)
    draft = draft_size(*source, plan)
    assert draft[0] <= source[0] and draft[1] <= source[1]
    left, top, right, bottom = scale_box(plan.box, source, draft)
    for kept, out, full in (
        (right - left, plan.size[0], draft[0] == source[0]),
        (bottom - top, plan.size[1], draft[1] == source[1]),
    ):
        assert full or kept >= 2 * out - 1e-6


def test_plan_scale_is_the_larger_axis_factor():
    assert ResizePlan((0, 0, 1000, 500), (100, 100)).scale == pytest.approx(0.2)
    assert ResizePlan((10, 10, 110, 60), (200, 100)).scale == pytest.approx(2.0)


# --- scale_box ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("box", "from_size", "to_size", "expected"),
    [
        ((256, 0, 768, 768), (1024, 768), (512, 384), (128, 0, 384, 384)),
        ((256, 0, 768, 768), (1024, 768), (1024, 768), (256, 0, 768, 768)),
        ((100, 100, 500, 300), (1000, 500), (250, 250), (25, 50, 125, 150)),
        ((0, 42.5, 1024, 725.5), (1024, 768), (128, 96), (0, 5.3125, 128, 90.6875)),
        # never past the edge of the smaller image
        ((0, 0, 1030, 770), (1024, 768), (512, 384), (0, 0, 512, 384)),
    ],
)
def test_scale_box(box, from_size, to_size, expected):
    assert scale_box(box, from_size, to_size) == approx_box(expected)


@pytest.mark.parametrize(
    ("width", "height", "limit", "expected"),
    [(3000, 10, 3000, True), (10, 3000, 3000, True), (2999, 2999, 3000, False), (1, 1, 1, True)],
)
def test_exceeds(width, height, limit, expected):
    assert exceeds(spec(width, height), limit) is expected


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((640, 426), True),
        ((639, 427), True),
        ((1, 1), True),
        ((640, 427), False),
        ((641, 427), False),
        ((640, 428), False),
    ],
)
def test_is_reduction_of_a_640x427_image(size: tuple[int, int], expected: bool) -> None:
    assert is_reduction(size, (640, 427)) is expected
