"""The decode limits in the config: defaults, parsing, and what a worker builds from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from phizer.config.loader import Config, load_config
from phizer.errors import ConfigError
from phizer.imaging.structure import DecodeLimits
from phizer.web.worker import WorkerState, make_origin_set

MINIMAL = "[master]\nhost = images.example.com\n[sizes]\ns = 10\n"


def load(tmp_path: Path, properties: str = "") -> Config:
    path = tmp_path / "phizer.conf"
    path.write_text("[properties]\n" + properties + MINIMAL)
    return load_config(str(path))


def test_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path).settings
    assert settings.max_jpeg_scans == 64
    assert settings.max_chunks == 10_000
    assert settings.decode_timeout == 10.0


def test_values_reach_the_worker(tmp_path: Path) -> None:
    config = load(tmp_path, "max_jpeg_scans = 12\nmax_chunks = 500\ndecode_timeout = 2.5\n")
    state = WorkerState(config, make_origin_set(config))
    try:
        assert state.limits == DecodeLimits(max_jpeg_scans=12, max_chunks=500)
        assert state.renderer.timeout == 2.5
    finally:
        state.renderer.close()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_jpeg_scans", "0"),
        ("max_jpeg_scans", "many"),
        ("max_chunks", "15"),
        ("decode_timeout", "0"),
        ("decode_timeout", "-1"),
        ("decode_timeout", "soon"),
    ],
)
def test_bad_values_name_the_option(tmp_path: Path, option: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, f"{option} = {value}\n")
    assert option in str(caught.value)
    assert value in str(caught.value)
