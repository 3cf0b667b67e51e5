"""The environment that has glibc ask for transparent huge pages."""

from __future__ import annotations

import pytest

from phizer.linux import huge_page_environment

MADVISE = "always [madvise] never"


def test_adds_the_tunable_and_keeps_the_rest() -> None:
    environ = {"PATH": "/usr/bin"}
    assert huge_page_environment(environ, MADVISE) == {
        "PATH": "/usr/bin",
        "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1",
    }
    assert environ == {"PATH": "/usr/bin"}  # the caller's mapping is left alone


def test_appends_to_other_tunables() -> None:
    environ = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    assert huge_page_environment(environ, "[always] madvise never") == {
        "GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    }


@pytest.mark.parametrize(
    ("environ", "mode"),
    [
        ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, MADVISE),  # the operator's choice
        ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}, MADVISE),  # already started under it
        ({}, "always madvise [never]"),  # THP off
        ({}, None),  # a kernel without THP
    ],
)
def test_nothing_to_change(environ: dict[str, str], mode: str | None) -> None:
    assert huge_page_environment(environ, mode) is None
