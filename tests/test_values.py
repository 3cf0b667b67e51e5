"""Single INI value parsers (phizer/values.py)."""

from __future__ import annotations

import logging
from logging.handlers import SysLogHandler

import pytest

from phizer.config import values

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("25 * 1024 * 1024, # 25MB", "25 * 1024 * 1024"),
        ("100 * 1024 * 1024 # 100MB", "100 * 1024 * 1024"),
        ("#ffffff # TODO: allow this to be set!", "#ffffff"),
        ("#ffffff", "#ffffff"),
        ("  95  ", "95"),
        ("95 ; comment", "95"),
        ("95\t# tab before the comment", "95"),
        ("95,", "95"),
        ("# only a comment", ""),
        ("; only a comment", ""),
        ("#", ""),
        ("", ""),
        ("LOG_ERR", "LOG_ERR"),
        ("a#b", "a#b"),  # no white space before '#': not a comment
        # A colour right after "=" in a size line is a value, not a comment.
        ("200x200 background = #000000", "200x200 background = #000000"),
        ("200x200 background= #000 # dark", "200x200 background= #000"),
    ],
)
def test_strip_comment(raw, expected):
    assert values.strip_comment(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0", 0),
        ("104857600", 100 * MIB),
        ("25 * 1024 * 1024", 25 * MIB),
        ("25*1024*1024", 25 * MIB),
        ("25MB", 25 * MIB),
        ("25 MB", 25 * MIB),
        ("25 MiB", 25 * MIB),
        ("25mib", 25 * MIB),
        ("25M", 25 * MIB),
        ("512K", 512 * 1024),
        ("512 KiB", 512 * 1024),
        ("2GB", 2 * 1024**3),
        ("1g", 1024**3),
        ("100b", 100),
        ("100 B", 100),
        ("  7  ", 7),
        ("2 * 3 MB", 6 * MIB),
    ],
)
def test_parse_byte_size(raw, expected):
    assert values.parse_byte_size(raw) == expected


def test_parse_byte_size_of_stripped_legacy_value():
    raw = "25 * 1024 * 1024, # 25MB"
    assert values.parse_byte_size(values.strip_comment(raw)) == 25 * MIB


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "MB",
        "-1",
        "1.5MB",
        "25 TB",
        "25 * ",
        "* 25",
        "25 ** 2",
        "25 + 1",
        "25 / 2",
        "0x100",
        "__import__('os').system('true')",
        "25MB # comment not stripped",
        "1" * 16,
    ],
)
def test_parse_byte_size_rejects(raw):
    with pytest.raises(ValueError):
        values.parse_byte_size(raw)


@pytest.mark.parametrize("raw", ["1", "true", "True", "TRUE", "yes", "Yes", "on", " On "])
def test_parse_bool_true(raw):
    assert values.parse_bool(raw) is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "no", "NO", "off", " off "])
def test_parse_bool_false(raw):
    assert values.parse_bool(raw) is False


@pytest.mark.parametrize("raw", ["", "2", "y", "n", "truthy", "None", "enabled"])
def test_parse_bool_rejects(raw):
    with pytest.raises(ValueError):
        values.parse_bool(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0", 0), ("42", 42), (" 42 ", 42), ("+7", 7), ("-3", -3), ("007", 7)],
)
def test_parse_int(raw, expected):
    assert values.parse_int(raw) == expected


@pytest.mark.parametrize("raw", ["", "4.0", "1e3", "0x10", "ten", "1_000", "4 2", "9" * 16])
def test_parse_int_rejects(raw):
    with pytest.raises(ValueError):
        values.parse_int(raw)


def test_parse_int_bounds_are_inclusive():
    assert values.parse_int("1", 1, 100) == 1
    assert values.parse_int("100", 1, 100) == 100
    with pytest.raises(ValueError, match="at least 1"):
        values.parse_int("0", 1, 100)
    with pytest.raises(ValueError, match="at most 100"):
        values.parse_int("101", 1, 100)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("3", 3.0), ("0.5", 0.5), ("10s", 10.0), ("10 s", 10.0), ("3600", 3600.0)],
)
def test_parse_seconds(raw, expected):
    assert values.parse_seconds(raw) == expected


@pytest.mark.parametrize("raw", ["0", "-1", "3601", "nan", "inf", "", "s", "ten"])
def test_parse_seconds_rejects(raw):
    with pytest.raises(ValueError):
        values.parse_seconds(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", 1), ("80", 80), ("65535", 65535)],
)
def test_parse_port(raw, expected):
    assert values.parse_port(raw) == expected


@pytest.mark.parametrize("raw", ["0", "65536", "-80", "http"])
def test_parse_port_rejects(raw):
    with pytest.raises(ValueError):
        values.parse_port(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("#ffffff", (255, 255, 255)),
        ("#FFFFFF", (255, 255, 255)),
        ("#fff", (255, 255, 255)),
        ("#000000", (0, 0, 0)),
        ("#102030", (16, 32, 48)),
        ("white", (255, 255, 255)),
        ("red", (255, 0, 0)),
        (" black ", (0, 0, 0)),
        ("rgb(1, 2, 3)", (1, 2, 3)),
        ("#10203040", (16, 32, 48)),  # an alpha component is dropped
    ],
)
def test_parse_color(raw, expected):
    assert values.parse_color(raw) == expected


@pytest.mark.parametrize("raw", ["", "#ffffff # TODO", "#ggg", "#12345", "nocolour", "255"])
def test_parse_color_rejects(raw):
    with pytest.raises(ValueError):
        values.parse_color(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("DEBUG", logging.DEBUG),
        ("debug", logging.DEBUG),
        ("INFO", logging.INFO),
        ("WARN", logging.WARNING),
        ("warning", logging.WARNING),
        ("ERROR", logging.ERROR),
        ("CRITICAL", logging.CRITICAL),
        ("fatal", logging.CRITICAL),
        (" Info ", logging.INFO),
    ],
)
def test_parse_log_level(raw, expected):
    assert values.parse_log_level(raw) == expected


@pytest.mark.parametrize("raw", ["", "10", "verbose", "LOG_ERR", "NOTSET"])
def test_parse_log_level_rejects_and_lists_the_names(raw):
    with pytest.raises(ValueError, match="DEBUG") as caught:
        values.parse_log_level(raw)
    assert "WARN" in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("LOG_LOCAL0", SysLogHandler.LOG_LOCAL0),
        ("log_local7", SysLogHandler.LOG_LOCAL7),
        ("LOCAL3", SysLogHandler.LOG_LOCAL3),
        ("LOG_DAEMON", SysLogHandler.LOG_DAEMON),
        ("LOG_USER", SysLogHandler.LOG_USER),
        ("none", None),
        ("None", None),
        ("", None),
    ],
)
def test_parse_syslog_facility(raw, expected):
    assert values.parse_syslog_facility(raw) == expected


@pytest.mark.parametrize("raw", ["LOG_LOCAL8", "LOG_ERR", "syslog0", "16"])
def test_parse_syslog_facility_rejects(raw):
    with pytest.raises(ValueError):
        values.parse_syslog_facility(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("LOG_EMERG", logging.CRITICAL),
        ("LOG_ALERT", logging.CRITICAL),
        ("LOG_CRIT", logging.CRITICAL),
        ("LOG_ERR", logging.ERROR),
        ("LOG_WARNING", logging.WARNING),
        ("LOG_NOTICE", logging.INFO),
        ("LOG_INFO", logging.INFO),
        ("LOG_DEBUG", logging.DEBUG),
        ("err", logging.ERROR),
        ("log_info", logging.INFO),
    ],
)
def test_parse_syslog_priority(raw, expected):
    assert values.parse_syslog_priority(raw) == expected


@pytest.mark.parametrize("raw", ["", "none", "LOG_LOCAL0", "3", "LOG_VERBOSE"])
def test_parse_syslog_priority_rejects(raw):
    with pytest.raises(ValueError):
        values.parse_syslog_priority(raw)


def test_networks_none_is_the_empty_list():
    # --check-config shows an empty list as "none"; the same word reads back.
    assert values.parse_networks("none") == ()
    assert values.parse_networks("NONE ") == ()
    assert [str(n) for n in values.parse_networks("10.0.0.0/8, ::1")] == ["10.0.0.0/8", "::1/128"]
    with pytest.raises(ValueError, match="nothing"):
        values.parse_networks("nothing")
