"""The environment that has glibc ask for transparent huge pages."""

from __future__ import annotations

import pytest

from phizer import cli
from phizer.process.linux import huge_page_environment

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


def test_a_failed_exec_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:

    def refuse(*args: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.setattr(cli, "thp_mode", lambda: MADVISE)
    monkeypatch.setattr(cli.os, "execve", refuse)
    assert cli._run_with_huge_pages() == "Permission denied"


def test_no_exec_when_nothing_is_to_change(monkeypatch: pytest.MonkeyPatch) -> None:

    def unexpected(*args: object) -> None:
        raise AssertionError("execve called")

    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=0")
    monkeypatch.setattr(cli, "thp_mode", lambda: MADVISE)
    monkeypatch.setattr(cli.os, "execve", unexpected)
    assert cli._run_with_huge_pages() is None
