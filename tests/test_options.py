"""The option declarations (phizer/config/options.py)."""

from __future__ import annotations

import dataclasses
import logging
from types import MappingProxyType

import pytest

from phizer.config.loader import Config, OriginSpec
from phizer.config.options import (
    BYTES,
    CACHE,
    INTEGER,
    PROPERTIES,
    CacheTiers,
    Option,
    Settings,
    declared,
    human_bytes,
    option,
    output_settings,
)
from phizer.config.sizes import parse_size_spec
from phizer.tiers.keys import TierKeys

MIB = 1024 * 1024


def test_every_attribute_is_declared_in_order():
    assert list(PROPERTIES) == [f.name for f in dataclasses.fields(Settings)]
    assert list(CACHE) == [f.name for f in dataclasses.fields(CacheTiers)]
    for declared_options in (PROPERTIES, CACHE):
        for name, declaration in declared_options.items():
            assert declaration.name == name
            assert declaration.help.strip(), name


def test_an_undeclared_attribute_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Loose:
        declared_one: int = option(INTEGER, 1, "declared")
        plain: int = 2

    with pytest.raises(TypeError, match="plain"):
        declared(Loose)


def test_defaults_are_the_dataclass_defaults():
    settings, tiers = Settings(), CacheTiers()
    for name, declaration in PROPERTIES.items():
        assert getattr(settings, name) == declaration.default_value(), name
    for name, declaration in CACHE.items():
        assert getattr(tiers, name) == declaration.default_value(), name


def test_a_default_is_within_its_own_range():
    for declaration in (*PROPERTIES.values(), *CACHE.values()):
        declaration.check(declaration.default_value())


def test_the_shown_default_reads_back_as_the_default():
    """--check-config and the README show values the way a file writes them."""
    skip = {"num_workers", "bind_host"}  # shown as words: computed, or every interface
    for declaration in (*PROPERTIES.values(), *CACHE.values()):
        if declaration.name in skip:
            continue
        shown = declaration.show(declaration.default_value())
        if declaration.default is None:
            assert shown == declaration.unset
            continue
        assert declaration.parse(shown) == declaration.default, declaration.name


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 bytes"),
        (1, "1 byte"),
        (1023, "1023 bytes"),
        (1024, "1 KiB"),
        (25 * MIB, "25 MiB"),
        (1536 * 1024, "1.5 MiB (1572864 bytes)"),
        (3 * 1024 * MIB, "3 GiB"),
    ],
)
def test_human_bytes(count, text):
    assert human_bytes(count) == text


def test_range_is_checked_with_the_option_units():
    quality = PROPERTIES["image_quality"]
    assert quality.parse("1") == 1
    assert quality.parse("100") == 100
    with pytest.raises(ValueError, match="at most 100"):
        quality.parse("101")
    with pytest.raises(ValueError, match="at least 1"):
        quality.parse("0")
    reserve = PROPERTIES["decode_memory_reserve"]
    with pytest.raises(ValueError, match="at least 2 MiB"):
        reserve.parse("1M")
    assert reserve.parse("1G") == 1024 * MIB
    assert reserve.range_text() == "2 MiB to 1 GiB"


def test_a_malformed_value_says_what_is_expected():
    with pytest.raises(ValueError, match="integer"):
        PROPERTIES["max_age"].parse("soon")
    with pytest.raises(ValueError, match="byte size"):
        PROPERTIES["client_cache_size"].parse("lots")


def test_unset_optional_values_read_as_their_label():
    webp = PROPERTIES["webp_quality"]
    assert webp.parse("none") is None
    assert webp.show(None) == "mapped"
    assert webp.show(70) == "70"
    assert PROPERTIES["syslog_facility"].show(None) == "none"
    assert CACHE["shared"].show(None) == "none"
    with pytest.raises(ValueError):
        PROPERTIES["image_quality"].parse("none")  # not optional


def test_values_are_shown_in_the_units_a_file_uses():
    assert PROPERTIES["decoded_cache_size"].show(128 * MIB) == "128 MiB"
    assert PROPERTIES["origin_timeout"].show(7.5) == "7.5s"
    assert PROPERTIES["canvas_color"].show((16, 32, 48)) == "#102030"
    assert PROPERTIES["log_level"].show(logging.INFO) == "INFO"
    assert PROPERTIES["syslog_facility"].show(16) == "LOG_LOCAL0"
    assert PROPERTIES["syslog_priority"].show(logging.ERROR) == "LOG_ERR"
    assert PROPERTIES["syslog_address"].show(("10.0.0.5", 514)) == "10.0.0.5:514"
    assert PROPERTIES["auto_format"].show(("AVIF", "WEBP")) == "avif, webp"
    assert PROPERTIES["keep_alive"].show(True) == "true"


def test_output_settings_are_exactly_those_declared_so():
    shaping = {name for name, declaration in PROPERTIES.items() if declaration.shapes_output}
    # What the encoder and the geometry read from [properties].
    assert {
        "image_quality",
        "canvas_color",
        "keep_icc",
        "strip_metadata",
        "animated",
        "max_frames",
        "progressive",
        "webp_quality",
        "avif_quality",
        "max_dimension",
    } <= shaping
    # Ports, caches and logging change no byte of an image.
    assert shaping.isdisjoint({"bind_port", "num_workers", "resized_cache_size", "log_level"})
    settings = Settings(image_quality=70, bind_port=9000)
    values = output_settings(settings)
    assert set(values) == shaping
    assert values["image_quality"] == 70


def test_a_byte_option_with_a_range():
    declaration = dataclasses.replace(
        Option(BYTES, MIB, "test", minimum=MIB, maximum=4 * MIB), name="t"
    )
    assert declaration.parse("2M") == 2 * MIB
    with pytest.raises(ValueError, match="at most 4 MiB"):
        declaration.parse("5M")


def test_auto_orient_shapes_the_output_and_its_tier_keys():
    declaration = PROPERTIES["auto_orient"]
    assert declaration.default is True and declaration.shapes_output
    assert declaration.parse("false") is False

    def key(settings: Settings) -> str:
        sizes = MappingProxyType({"s": parse_size_spec("s", "100")[0]})
        config = Config(settings, OriginSpec("master", "a.example.com"), (), sizes)
        return TierKeys(config).result("s", "/s/a.jpg")

    assert key(Settings(auto_orient=False)) != key(Settings())
