"""phizer.qualities: the JPEG -> WebP/AVIF quality table and its interpolation."""

from __future__ import annotations

import itertools

import pytest

from phizer.imaging import qualities
from phizer.imaging.qualities import EQUIVALENT_QUALITY, quality_for

MAPPED = (("WEBP", 1), ("AVIF", 2))
ALL_QUALITIES = range(1, 101)


def test_rows_are_sorted_by_jpeg_quality_without_repeats() -> None:
    keys = [row[0] for row in EQUIVALENT_QUALITY]
    assert keys == sorted(set(keys))


@pytest.mark.parametrize(("image_format", "column"), MAPPED)
def test_each_column_rises_with_jpeg_quality(image_format: str, column: int) -> None:
    values = [row[column] for row in EQUIVALENT_QUALITY]
    assert values == sorted(values), image_format


def test_every_entry_is_a_valid_quality() -> None:
    for row in EQUIVALENT_QUALITY:
        assert all(1 <= value <= 100 for value in row), row


def test_table_reaches_both_ends_of_the_scale() -> None:
    # Without a row at 100 the top of the scale would be flat at the last
    # measured value; the low end scales down from the first row.
    assert EQUIVALENT_QUALITY[-1][0] == 100
    assert EQUIVALENT_QUALITY[0][0] <= 50


@pytest.mark.parametrize("row", EQUIVALENT_QUALITY)
def test_measured_rows_are_returned_exactly(row: tuple[int, int, int]) -> None:
    assert quality_for("WEBP", row[0]) == row[1]
    assert quality_for("AVIF", row[0]) == row[2]


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "GIF"])
def test_other_formats_keep_the_jpeg_quality(image_format: str) -> None:
    assert [quality_for(image_format, q) for q in ALL_QUALITIES] == list(ALL_QUALITIES)


@pytest.mark.parametrize(("image_format", "column"), MAPPED)
def test_mapping_is_monotonic_and_in_range_over_the_whole_scale(
    image_format: str, column: int
) -> None:
    mapped = [quality_for(image_format, q) for q in ALL_QUALITIES]
    assert mapped == sorted(mapped)
    assert all(1 <= value <= 100 for value in mapped)
    assert mapped[-1] == EQUIVALENT_QUALITY[-1][column]


@pytest.mark.parametrize(("image_format", "column"), MAPPED)
def test_between_rows_stays_between_the_neighbours(image_format: str, column: int) -> None:
    for low, high in itertools.pairwise(EQUIVALENT_QUALITY):
        for q in range(low[0] + 1, high[0]):
            assert low[column] <= quality_for(image_format, q) <= high[column], q


@pytest.fixture
def known_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qualities, "EQUIVALENT_QUALITY", ((40, 20, 10), (60, 50, 30), (90, 80, 90)))


@pytest.mark.usefixtures("known_table")
@pytest.mark.parametrize(
    ("jpeg_quality", "webp", "avif"),
    [
        (60, 50, 30),  # a row
        (50, 35, 20),  # halfway between the first two rows
        (45, 28, 15),  # a quarter: 27.5 rounds to even, 15 exactly
        (70, 60, 50),  # a third of the way from 60 to 90
        (89, 79, 88),
    ],
)
def test_linear_interpolation_between_rows(jpeg_quality: int, webp: int, avif: int) -> None:
    assert quality_for("WEBP", jpeg_quality) == webp
    assert quality_for("AVIF", jpeg_quality) == avif


@pytest.mark.usefixtures("known_table")
@pytest.mark.parametrize(
    ("jpeg_quality", "webp", "avif"),
    [
        (20, 10, 5),  # below the first row: scaled in proportion from it
        (4, 2, 1),
        (1, 1, 1),  # 0.5 and 0.25 are raised to the lowest quality
    ],
)
def test_below_the_first_row_scales_towards_zero(jpeg_quality: int, webp: int, avif: int) -> None:
    assert quality_for("WEBP", jpeg_quality) == webp
    assert quality_for("AVIF", jpeg_quality) == avif


@pytest.mark.usefixtures("known_table")
@pytest.mark.parametrize("jpeg_quality", [91, 95, 100])
def test_above_the_last_row_keeps_its_value(jpeg_quality: int) -> None:
    assert quality_for("WEBP", jpeg_quality) == 80
    assert quality_for("AVIF", jpeg_quality) == 90
