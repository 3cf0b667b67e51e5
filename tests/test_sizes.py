"""``[sizes]`` lines (phizer/sizes.py)."""

from __future__ import annotations

import pytest

from phizer.config.sizes import Constraint, SizeSpec, SkippedSize, parse_size_spec


@pytest.mark.parametrize(
    "value",
    ["220x220", "220 x 220", "220X220", "220,220", "220, 220", "220 , 220", "220", " 220 "],
)
def test_dimension_spellings(value):
    spec, warnings = parse_size_spec("s220", value)
    assert spec == SizeSpec("s220", 220, 220, Constraint.MAX, None)
    assert warnings == []


@pytest.mark.parametrize(
    ("value", "width", "height"),
    [("640x480", 640, 480), ("480 x 640", 480, 640), ("1,2", 1, 2), ("100000x1", 100000, 1)],
)
def test_width_and_height_are_kept_in_order(value, width, height):
    spec, _ = parse_size_spec("s", value)
    assert (spec.width, spec.height) == (width, height)


@pytest.mark.parametrize(
    ("value", "constraint"),
    [
        ("220x220", Constraint.MAX),
        ("220x220 max", Constraint.MAX),
        ("220x220 MAX", Constraint.MAX),
        ("220x220 square", Constraint.SQUARE),
        ("220 square", Constraint.SQUARE),
        ("220x220, square", Constraint.SQUARE),
        ("200x300 portrait", Constraint.PORTRAIT),
        ("300x300 portrait", Constraint.PORTRAIT),
        ("300x200 landscape", Constraint.LANDSCAPE),
        ("300 x 300 Landscape", Constraint.LANDSCAPE),
    ],
)
def test_constraints(value, constraint):
    spec, warnings = parse_size_spec("s", value)
    assert spec.constraint is constraint
    assert warnings == []


def test_legacy_sizes_section():
    # The [sizes] lines of the 2012 phizer.conf.
    assert parse_size_spec("s220", "220x220 square")[0] == SizeSpec(
        "s220", 220, 220, Constraint.SQUARE
    )
    assert parse_size_spec("m120", "120x120 max")[0] == SizeSpec("m120", 120, 120, Constraint.MAX)


def test_portrait_keeps_both_sides():
    spec, _ = parse_size_spec("p", "200x300 portrait")
    assert (spec.width, spec.height) == (200, 300)


def test_landscape_keeps_both_sides():
    spec, _ = parse_size_spec("l", "300x200 landscape")
    assert (spec.width, spec.height) == (300, 200)


def test_portrait_wider_than_tall_is_an_error():
    with pytest.raises(ValueError, match="portrait"):
        parse_size_spec("p", "300x200 portrait")


def test_landscape_taller_than_wide_is_an_error():
    with pytest.raises(ValueError, match="landscape"):
        parse_size_spec("l", "200x300 landscape")


@pytest.mark.parametrize(
    ("value", "side"),
    [("100x200 square", 200), ("200x100 square", 200), ("96, 96 square", 96), ("150 square", 150)],
)
def test_square_uses_the_larger_side(value, side):
    spec, _ = parse_size_spec("sq", value)
    assert (spec.width, spec.height) == (side, side)
    assert spec.constraint is Constraint.SQUARE


@pytest.mark.parametrize(
    ("value", "quality", "constraint"),
    [
        ("96, 96 square quality=70", 70, Constraint.SQUARE),
        ("96x96 quality=70", 70, Constraint.MAX),
        ("96x96 quality = 1", 1, Constraint.MAX),
        ("96x96 quality=100 square", 100, Constraint.SQUARE),
        ("96x96 square, quality=55", 55, Constraint.SQUARE),
        ("96x96 QUALITY=80", 80, Constraint.MAX),
    ],
)
def test_quality_option(value, quality, constraint):
    spec, warnings = parse_size_spec("thumb", value)
    assert spec.quality == quality
    assert spec.constraint is constraint
    assert (spec.width, spec.height) == (96, 96)
    assert warnings == []


def test_quality_defaults_to_none():
    assert parse_size_spec("s", "96x96")[0].quality is None


@pytest.mark.parametrize("value", ["96x96 quality=0", "96x96 quality=101", "96x96 quality=high"])
def test_bad_quality_is_an_error(value):
    with pytest.raises(ValueError):
        parse_size_spec("s", value)


def test_unknown_options_warn_and_are_ignored():
    spec, warnings = parse_size_spec("s", "96x96 square sharpen=2 dpi=300")
    assert spec == SizeSpec("s", 96, 96, Constraint.SQUARE)
    assert len(warnings) == 2
    assert any("sharpen" in w for w in warnings)
    assert any("dpi" in w for w in warnings)


def test_unknown_option_next_to_known_ones():
    spec, warnings = parse_size_spec("s", "96x96 quality=60 sharpen=1 format=webp progressive=1")
    assert (spec.quality, spec.output_format, spec.progressive) == (60, "WEBP", True)
    assert len(warnings) == 1
    assert "sharpen" in warnings[0]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "square",
        "x220",
        "-220x220",
        "220x-220",
        "0x220",
        "220x0",
        "0",
        "100001x100",
        "100x100001",
        "1000000x1000000",
        "220.5x220",
        "220x220 fit",
        "220x220 max square",
        "220x220 square extra",
        "220x220x220",
        "wide",
    ],
)
def test_malformed_values(value):
    with pytest.raises(ValueError):
        parse_size_spec("s", value)


@pytest.mark.parametrize("code", ["", "s-220", "s_220", "s 220", "s.220", "a" * 33, "é"])
def test_bad_codes(code):
    with pytest.raises(ValueError, match="size code"):
        parse_size_spec(code, "220x220")


@pytest.mark.parametrize("code", ["s", "s220", "220", "a" * 32, "thumb2x"])
def test_good_codes(code):
    assert parse_size_spec(code, "220x220")[0].code == code


# --- per-size output options: format=, upscale=, progressive=, background= --------


def test_output_options_default_to_the_properties():
    spec, warnings = parse_size_spec("s", "96x96")
    assert spec.output_format is None  # the source's format (or a negotiated one)
    assert spec.upscale is True
    assert spec.progressive is None  # [properties] progressive
    assert spec.background is None  # [properties] canvas_color
    assert warnings == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("jpeg", "JPEG"),
        ("jpg", "JPEG"),
        ("JPEG", "JPEG"),
        ("png", "PNG"),
        ("Png", "PNG"),
        ("webp", "WEBP"),
        ("WebP", "WEBP"),
        ("avif", "AVIF"),
        ("AVIF", "AVIF"),
    ],
)
def test_format_option(value, expected):
    spec, warnings = parse_size_spec("s", f"96x96 square format={value}")
    assert spec.output_format == expected
    assert spec.constraint is Constraint.SQUARE
    assert warnings == []


@pytest.mark.parametrize("value", ["gif", "bmp", "tiff", "eps", "heic", "jpeg2000", "x", "1"])
def test_unsupported_format_names_the_choices(value):
    with pytest.raises(ValueError, match=r"format=.*jpeg, png, webp or avif"):
        parse_size_spec("s", f"96x96 format={value}")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("yes", True), ("1", True), ("false", False), ("NO", False), ("off", False)],
)
def test_upscale_and_progressive_are_booleans(value, expected):
    spec, warnings = parse_size_spec("s", f"96x96 upscale={value} progressive={value}")
    assert spec.upscale is expected
    assert spec.progressive is expected
    assert warnings == []


@pytest.mark.parametrize("option", ["upscale", "progressive"])
@pytest.mark.parametrize("value", ["maybe", "2", "truthy", "-1"])
def test_bad_booleans_say_what_is_expected(option, value):
    with pytest.raises(ValueError, match="true/false"):
        parse_size_spec("s", f"96x96 {option}={value}")


@pytest.mark.parametrize(
    ("value", "rgb"),
    [
        ("#000000", (0, 0, 0)),
        ("#102030", (16, 32, 48)),
        ("#fff", (255, 255, 255)),
        ("white", (255, 255, 255)),
        ("Red", (255, 0, 0)),
    ],
)
def test_background_option(value, rgb):
    spec, warnings = parse_size_spec("s", f"96x96 background={value}")
    assert spec.background == rgb
    assert warnings == []


@pytest.mark.parametrize("value", ["#ggg", "#12", "notacolour", "12345"])
def test_bad_background_says_what_is_expected(value):
    with pytest.raises(ValueError, match="colour"):
        parse_size_spec("s", f"96x96 background={value}")


def test_every_option_on_one_line_in_any_order_and_case():
    spec, warnings = parse_size_spec(
        "card",
        "400 x 300 landscape, FORMAT=webp quality = 70, Upscale=no progressive=yes "
        "background=#102030",
    )
    assert spec == SizeSpec(
        "card",
        400,
        300,
        Constraint.LANDSCAPE,
        quality=70,
        output_format="WEBP",
        upscale=False,
        progressive=True,
        background=(16, 32, 48),
    )
    assert warnings == []


@pytest.mark.parametrize("value", ["96x96 format=", "96x96 format", "96x96 upscale= quality=5"])
def test_an_option_without_a_value_is_an_error(value):
    with pytest.raises(ValueError):
        parse_size_spec("s", value)


@pytest.mark.parametrize(
    ("code", "value"),
    [
        ("p", "300x200 portrait"),
        ("l", "200x300 landscape"),
        ("f", "100x100 fit"),
        ("j", "junk"),
        ("w", "100x100 max extra"),
        ("a_b", "100x100"),
        ("z", "0x0"),
        ("big", "100001x10"),
    ],
)
def test_lines_2012_skipped_are_skipped_sizes(code, value):
    with pytest.raises(SkippedSize):
        parse_size_spec(code, value)


@pytest.mark.parametrize("value", ["96x96 format=gif", "96x96 quality=0", "96x96 upscale=maybe"])
def test_bad_options_are_errors_not_skipped_sizes(value):
    with pytest.raises(ValueError) as caught:
        parse_size_spec("thumb", value)
    assert not isinstance(caught.value, SkippedSize)
