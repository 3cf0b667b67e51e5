"""Files the 2012 phizer started with start this one too (phizer/config/loader.py,
phizer/config/inifile.py): what 2012 skipped or merged is skipped or merged
the same way, each with one warning; what it could not read still stops phizer."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest

from phizer.cli import build_parser, main, resolve_config
from phizer.config.loader import Config, is_loopback, load_config
from phizer.errors import ConfigError

MINIMAL = """\
[master]
host = images.example.com

[sizes]
s100 = 100x100
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "phizer.conf"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


def only_warning(config: Config) -> str:
    assert len(config.warnings) == 1, config.warnings
    return config.warnings[0]


# --- the front's address ------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.0.1.1", "::1", "LOCALHOST"])
def test_a_loopback_bind_host_is_ignored_as_in_2012(tmp_path, host):
    config = load(tmp_path, f"[properties]\nbind_host = {host}\n" + MINIMAL)
    assert config.settings.bind_host == ""  # every interface
    warning = only_warning(config)
    assert "bind_host" in warning and host in warning
    assert f"-H {host}" in warning


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "images.example.com"])
def test_other_bind_hosts_are_honoured(tmp_path, host):
    config = load(tmp_path, f"[properties]\nbind_host = {host}\n" + MINIMAL)
    assert config.settings.bind_host == host
    assert config.warnings == ()


def test_the_host_flag_is_honoured_even_for_loopback(tmp_path):
    path = write(tmp_path, "[properties]\nbind_host = localhost\n" + MINIMAL)
    args = build_parser().parse_args(["-c", path, "-H", "127.0.0.1"])
    flagged = resolve_config(args)
    assert flagged.settings.bind_host == "127.0.0.1"
    assert flagged.warnings == ()  # the file's bind_host does not matter then
    args = build_parser().parse_args(["-c", path])
    from_file = resolve_config(args)
    assert from_file.settings.bind_host == ""
    assert len(from_file.warnings) == 1


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost.", True),
        ("a.localhost", True),
        ("127.0.0.1", True),
        ("[::1]", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("localhost.example.com", False),
        ("", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


# --- values 2012 started with -------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("max_age", "-1", 0),
        ("image_quality", "101", 95),
        ("image_quality", "0", 95),
        ("num_workers", "0", None),  # the computed default
        ("bind_port", "70000", 6776),
        ("canvas_color", "#ggg", (255, 255, 255)),
        ("canvas_color", "not a colour", (255, 255, 255)),
        ("debug", "maybe", False),
        ("keep_alive", "sometimes", False),
        ("disable_cache", "please", False),
        ("syslog_facility", "LOG_NOWHERE", None),
        ("syslog_priority", "LOUD", logging.ERROR),
    ],
)
def test_values_this_version_cannot_honour_fall_back_with_a_warning(
    tmp_path, option, value, expected
):
    config = load(tmp_path, f"[properties]\n{option} = {value}\n" + MINIMAL)
    if expected is None and option == "num_workers":
        expected = load(tmp_path, MINIMAL).settings.num_workers
    assert getattr(config.settings, option) == expected
    warning = only_warning(config)
    assert f"[properties] {option}" in warning and value in warning
    assert "default" in warning


@pytest.mark.parametrize(
    ("option", "value"),
    [
        # 2012 read these as integers and could not start on them either.
        ("max_age", "a day"),
        ("bind_port", "eighty"),
        ("image_quality", "best"),
        # Options the 2012 phizer did not have are checked strictly.
        ("max_frames", "0"),
        ("webp_quality", "101"),
        ("shutdown_timeout", "-1"),
    ],
)
def test_values_2012_could_not_read_either_still_stop_phizer(tmp_path, option, value):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, f"[properties]\n{option} = {value}\n" + MINIMAL)
    assert f"[properties] {option}" in str(caught.value)
    assert value in str(caught.value)


# --- size lines 2012 skipped --------------------------------------------------


@pytest.mark.parametrize(
    ("code", "line"),
    [
        ("p200", "300x200 portrait"),
        ("l200", "200x300 landscape"),
        ("f100", "100x100 fit"),
        ("junk", "hello"),
        ("more", "100x100 max please"),
        ("snake_case", "100x100"),
        ("zero", "0x0"),
    ],
)
def test_size_lines_2012_skipped_are_skipped_with_a_warning(tmp_path, code, line):
    config = load(tmp_path, f"{MINIMAL}{code} = {line}\n")
    assert list(config.sizes) == ["s100"]
    warning = only_warning(config)
    assert f"[sizes] {code}" in warning and line in warning
    assert "skipped" in warning and "404" in warning


def test_a_file_of_only_skipped_sizes_has_no_sizes(tmp_path):
    with pytest.raises(ConfigError, match="no sizes"):
        load(tmp_path, "[master]\nhost = a.example.com\n[sizes]\np = 300x200 portrait\n")


def test_bad_options_of_a_size_still_stop_phizer(tmp_path):
    # The 2012 phizer had no size options: a file using them is a new one.
    with pytest.raises(ConfigError, match=r"\[sizes\] thumb"):
        load(tmp_path, MINIMAL + "thumb = 96x96 quality=500\n")


# --- merged sections, options and [DEFAULT] ------------------------------------


def test_an_option_given_twice_keeps_the_last_value(tmp_path):
    config = load(tmp_path, "[properties]\nmax_age = 10\nmax_age = 60\n" + MINIMAL)
    assert config.settings.max_age == 60
    warning = only_warning(config)
    assert "[properties] max_age" in warning and "line 3" in warning and "line 2" in warning


def test_an_option_given_again_in_a_repeated_section(tmp_path):
    text = "[properties]\nmax_age = 10\n" + MINIMAL + "[properties]\nmax_age = 20\n"
    config = load(tmp_path, text)
    assert config.settings.max_age == 20
    assert len(config.warnings) == 2  # the section and the option


def test_a_size_given_twice(tmp_path):
    config = load(tmp_path, MINIMAL + "s100 = 50x50 square\n")
    assert (config.sizes["s100"].width, config.sizes["s100"].constraint) == (50, "square")
    assert "[sizes] s100" in only_warning(config)


def test_default_section_applies_to_every_section_with_one_warning(tmp_path):
    text = """\
    [DEFAULT]
    port = 8080
    base = /photos

    [properties]
    max_age = 60

    [master]
    host = images.example.com
    root = %(base)s/

    [slave-1]
    host = backup.example.com
    port = 81

    [sizes]
    s100 = 100x100
    """
    config = load(tmp_path, text)
    assert config.master is not None and config.slaves
    assert (config.master.port, config.master.root) == (8080, "/photos/")
    assert config.slaves[0].port == 81
    assert list(config.sizes) == ["s100"]  # [DEFAULT]'s options are no sizes
    warning = only_warning(config)
    assert "[DEFAULT]" in warning and "base, port" in warning


# --- %(name)s ------------------------------------------------------------------


def test_references_are_expanded_as_by_2012s_configparser(tmp_path):
    text = """\
    [properties]
    mb = 1024 * 1024
    client_cache_size = 30 * %(mb)s
    [master]
    host = images.example.com
    root = %(prefix)s%(prefix)s/
    prefix = /p
    [sizes]
    s100 = 100x100
    pct = 50% of nothing
    """
    config = load(tmp_path, text)
    assert config.settings.client_cache_size == 30 * 1024 * 1024
    assert config.master is not None and config.master.root == "/p/p/"
    # A lone % without %( stays as written (here it makes a junk size line).
    assert any("50% of nothing" in warning for warning in config.warnings)


def test_a_missing_reference_names_the_option(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "[properties]\nmax_age = %(day)s\n" + MINIMAL)
    message = str(caught.value)
    assert "[properties] max_age" in message and "day" in message
    assert "\n" not in message


def test_a_reference_to_itself_is_an_error_not_a_hang(tmp_path):
    with pytest.raises(ConfigError, match="max_age"):
        load(tmp_path, "[properties]\nmax_age = %(max_age)s\n" + MINIMAL)


# --- root without a trailing slash -----------------------------------------------


@pytest.mark.parametrize(
    ("root", "resolved"),
    [("/sub", "/"), ("/a/b", "/a/"), ("/a/b # prefix", "/a/")],
)
def test_a_root_without_trailing_slash_resolves_as_in_2012(tmp_path, root, resolved):
    config = load(tmp_path, f"[master]\nhost = a.example.com\nroot = {root}\n[sizes]\ns = 10\n")
    assert config.master is not None
    assert config.master.root == resolved
    written = root.split(" #")[0]
    warning = only_warning(config)
    assert f"root = {written}" in warning
    assert f"root = {resolved}" in warning and f"root = {written}/" in warning


# --- the whole story: 2012's own example file ----------------------------------

EXAMPLE_2012 = """\
[properties]
bind_host = localhost
bind_port = 6776
canvas_color = #ffffff # TODO: allow this to be set!
client_cache_size = 25 * 1024 * 1024, # 25MB
debug = False
image_quality = 95
max_age = -1
resized_cache_size = 100 * 1024 * 1024 # 100MB
syslog_priority = LOG_ERR

[master]
host = localhost
port = 8000
root = /images

[sizes]
s220 = 220x220 square
p200 = 300x200 portrait
m_120 = 120x120
"""


def test_check_config_lists_the_warnings_and_exits_0(tmp_path, capsys):
    path = write(tmp_path, EXAMPLE_2012)
    assert main(["-c", path, "--check-config"]) == 0
    out = capsys.readouterr().out
    warnings = out.split("\nwarnings\n", 1)[1].strip().splitlines()
    assert len(warnings) == 5
    for needle in ("bind_host", "max_age", "root = /images", "p200", "m_120"):
        assert sum(needle in line for line in warnings) == 1, needle
    assert list(load_config(path).sizes) == ["s220"]
