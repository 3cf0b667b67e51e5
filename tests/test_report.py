"""``--check-config``'s report (phizer/report.py) on configs read from files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from phizer.config.loader import Config, load_config
from phizer.config.options import Settings
from phizer.config.sizes import parse_size_spec
from phizer.report import describe_size, render

MINIMAL = """\
[master]
host = images.example.com

[sizes]
s100 = 100x100
"""


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "phizer.conf"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_config(str(path))


def section(report: str, title: str) -> list[str]:
    for block in report.split("\n\n"):
        lines = block.splitlines()
        if lines[0] == title:
            return [line.strip() for line in lines[1:]]
    raise AssertionError(f"no section {title!r} in\n{report}")


def setting(report: str, name: str) -> str:
    for line in section(report, "[properties]"):
        key, _, value = line.partition(" = ")
        if key.strip() == name:
            return value
    raise AssertionError(f"{name} not listed")


def test_byte_sizes_in_human_units_and_unset_values_by_name(tmp_path):
    config = load(tmp_path, "[properties]\ndecoded_cache_size = 134217728\n" + MINIMAL)
    report = render(config, "phizer.conf")
    assert setting(report, "decoded_cache_size") == "128 MiB"
    assert setting(report, "decode_memory_reserve") == "32 MiB"
    assert setting(report, "max_source_bytes") == "50 MiB"
    assert setting(report, "webp_quality") == "mapped"
    assert setting(report, "avif_quality") == "mapped"
    assert setting(report, "syslog_facility") == "none"
    assert setting(report, "trusted_proxies") == "none"
    assert "None" not in report


def test_memory_total_counts_every_worker_cache(tmp_path):
    text = """\
    [properties]
    num_workers = 3
    resized_cache_size = 10M
    client_cache_size = 1M
    decoded_cache_size = 4M
    """
    report = render(load(tmp_path, text + MINIMAL), "phizer.conf")
    caches = section(report, "caches")
    assert "each worker, originals: 1 MiB (3 workers: 3 MiB)" in caches
    assert "each worker, decoded originals: 4 MiB (3 workers: 12 MiB)" in caches
    # 10 + 3 x (1 + 4)
    assert caches[-1] == "at most 25 MiB of cached images in all"


def test_disabled_caches(tmp_path):
    report = render(load(tmp_path, "[properties]\ndisable_cache = yes\n" + MINIMAL), "x")
    assert section(report, "caches") == ["off (disable_cache = true)"]


def describe(line: str, **settings: object) -> str:
    spec, _ = parse_size_spec("s", line)
    return describe_size(spec, Settings(**settings))  # type: ignore[arg-type]


def test_a_webp_size_is_not_described_as_jpeg():
    text = describe("400x300 landscape format=webp quality=80")
    assert "as WEBP" in text
    assert "JPEG" not in text
    assert "baseline" not in text and "progressive" not in text


def test_a_png_size_is_lossless():
    text = describe("200 format=png")
    assert "as PNG" in text and "lossless" in text
    assert "quality" not in text and "JPEG" not in text


@pytest.mark.parametrize(
    ("line", "settings", "expected"),
    [
        ("100 format=jpeg", {}, "baseline JPEG"),
        ("100 format=jpeg progressive=yes", {}, "progressive JPEG"),
        ("100 format=jpeg", {"progressive": True}, "progressive JPEG"),
        ("100", {}, "JPEGs written baseline"),
        ("100", {"progressive": True}, "JPEGs written progressive"),
    ],
)
def test_progressive_or_baseline_only_for_jpeg_output(line, settings, expected):
    assert describe(line, **settings).endswith(expected)


def test_format_quality_settings_are_described_as_used():
    assert "quality 61" in describe("100 format=webp", webp_quality=61)
    # A size's quality= is on the JPEG scale and wins over webp_quality.
    assert "quality 61" not in describe("100 format=webp quality=90", webp_quality=61)
    assert "quality 70 on the JPEG scale" in describe("100 quality=70")


def test_warnings_are_listed(tmp_path):
    report = render(load(tmp_path, "[properties]\nnum_procs = 4\n" + MINIMAL), "x")
    assert section(report, "warnings") == ["ignoring unknown option [properties] num_procs"]
    assert section(render(load(tmp_path, MINIMAL), "x"), "warnings") == ["none"]


def test_the_front_on_every_interface(tmp_path):
    report = render(load(tmp_path, "[properties]\nnum_workers = 1\n" + MINIMAL), "x")
    assert setting(report, "bind_host") == "every interface"
    assert section(report, "processes")[:2] == ["front      *:6776", "worker 1   127.0.0.1:6777"]
    named = render(load(tmp_path, "[properties]\nbind_host = 192.0.2.1\n" + MINIMAL), "x")
    assert section(named, "processes")[0] == "front      192.0.2.1:6776"
