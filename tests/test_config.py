"""The config file (phizer/config.py), read from files written by each test."""

from __future__ import annotations

import logging
import os
import textwrap
from pathlib import Path

import pytest

from phizer.config.loader import Config, Settings, load_config, with_overrides
from phizer.config.sizes import Constraint, SizeSpec
from phizer.errors import ConfigError

MIB = 1024 * 1024

# The shape of the 2012 phizer.conf, Python-isms and all.
LEGACY = """\
[properties]
# interface to bind to (0.0.0.0 binds to all)
bind_host = 0.0.0.0

# Port to listen to incoming HTTP requests on.
bind_port = 9000

# Currently unused.
canvas_color = #ffffff # TODO: allow this to be set!

# Size in bytes for worker cache. This holds the full size images
client_cache_size = 25 * 1024 * 1024, # 25MB

# Turns on Debugging. Default False
# debug = False

# Image save quality (affects JPEG only)
image_quality = 95

# Cache-control: max-age value to send back
max_age = 0

max_dimension = 1500

# num_workers = DEFAULT_NUM_WORKERS

resized_cache_size = 100 * 1024 * 1024 # 100MB

# syslog_facility = None
# syslog_priority = LOG_ERR

[master]
host = localhost
port = 8000

[slave-1]
host = localhost
port = 80

# Directory where the images reside on the web server.
root = /

[slave-2]
host = localhost
port = 80
root = /

[sizes]
# code = width x height [constraint]
s220 = 220x220 square
s120 = 120x120 square
m220 = 220x220 max
m120 = 120x120 max
"""

MINIMAL = """\
[master]
host = images.example.com

[sizes]
s100 = 100x100
"""


def write(directory: Path, text: str, name: str = "phizer.conf") -> str:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


def test_legacy_file_properties(tmp_path):
    settings = load(tmp_path, LEGACY).settings
    assert settings.bind_host == "0.0.0.0"
    assert settings.bind_port == 9000
    assert settings.canvas_color == (255, 255, 255)
    assert settings.client_cache_size == 25 * MIB
    assert settings.resized_cache_size == 100 * MIB
    assert settings.image_quality == 95
    assert settings.max_age == 0
    assert settings.max_dimension == 1500
    assert settings.debug is False
    assert settings.syslog_facility is None


def test_legacy_file_origins(tmp_path):
    config = load(tmp_path, LEGACY)
    assert config.master is not None
    assert (config.master.host, config.master.port, config.master.root) == ("localhost", 8000, "/")
    assert config.master.directory is None
    assert [s.name for s in config.slaves] == ["slave-1", "slave-2"]
    assert [(s.host, s.port, s.root) for s in config.slaves] == [
        ("localhost", 80, "/"),
        ("localhost", 80, "/"),
    ]
    assert [o.name for o in config.origins] == ["master", "slave-1", "slave-2"]


def test_legacy_file_sizes(tmp_path):
    sizes = load(tmp_path, LEGACY).sizes
    assert dict(sizes) == {
        "s220": SizeSpec("s220", 220, 220, Constraint.SQUARE),
        "s120": SizeSpec("s120", 120, 120, Constraint.SQUARE),
        "m220": SizeSpec("m220", 220, 220, Constraint.MAX),
        "m120": SizeSpec("m120", 120, 120, Constraint.MAX),
    }
    assert load(tmp_path, LEGACY).warnings == ()


def test_defaults_without_properties(tmp_path):
    settings = load(tmp_path, MINIMAL).settings
    defaults = Settings()
    assert settings.bind_host == ""  # every interface
    assert settings.bind_port == 6776
    assert settings.canvas_color == (255, 255, 255)
    assert settings.client_cache_size == 25 * MIB
    assert settings.resized_cache_size == 100 * MIB
    assert settings.image_quality == 95
    assert settings.keep_alive is False
    assert settings.disable_cache is False
    assert settings.log_level == logging.WARNING
    assert settings.log_level_worker == logging.WARNING
    assert settings.max_age == 0
    assert settings.max_dimension == 3000
    assert settings.max_inflight_requests == 100
    assert settings.syslog_priority == logging.ERROR
    assert settings.num_workers == defaults.num_workers
    # More workers than cores: a burst of photos pinned to one worker must
    # not leave a core idle.
    assert settings.num_workers > (os.cpu_count() or 1)


def test_every_property_is_parsed(tmp_path):
    text = """\
    [properties]
    bind_host = 192.0.2.10
    bind_port = 8080
    canvas_color = #102030
    client_cache_size = 10MB
    debug = yes
    disable_cache = on
    image_quality = 80
    keep_alive = true
    log_level = DEBUG
    log_level_worker = error
    max_age = 86400
    max_dimension = 2000
    max_inflight_requests = 50
    num_workers = 3
    resized_cache_size = 1 GiB
    syslog_facility = LOG_LOCAL0
    syslog_priority = LOG_INFO
    origin_connect_timeout = 2
    origin_timeout = 7.5

    [master]
    host = images.example.com

    [sizes]
    s100 = 100x100
    """
    settings = load(tmp_path, text).settings
    assert settings == Settings(
        bind_host="192.0.2.10",
        bind_port=8080,
        canvas_color=(16, 32, 48),
        client_cache_size=10 * MIB,
        debug=True,
        disable_cache=True,
        image_quality=80,
        keep_alive=True,
        log_level=logging.DEBUG,
        log_level_worker=logging.ERROR,
        max_age=86400,
        max_dimension=2000,
        max_inflight_requests=50,
        num_workers=3,
        resized_cache_size=1024 * MIB,
        syslog_facility=16,  # LOG_LOCAL0
        syslog_priority=logging.INFO,
        origin_connect_timeout=2.0,
        origin_timeout=7.5,
    )


def test_trailing_comments_everywhere(tmp_path):
    text = """\
    [properties]
    bind_port = 8080 # the front
    keep_alive = false ; legacy
    log_level = INFO  # chatty

    [master]
    host = images.example.com # primary
    port = 8080, # alternate http
    root = /photos/ # prefix

    [sizes]
    s100 = 100x100 square # thumbnails
    """
    config = load(tmp_path, text)
    assert config.settings.bind_port == 8080
    assert config.settings.keep_alive is False
    assert config.settings.log_level == logging.INFO
    assert config.master is not None
    assert (config.master.host, config.master.port) == ("images.example.com", 8080)
    assert config.master.root == "/photos/"
    assert config.sizes["s100"] == SizeSpec("s100", 100, 100, Constraint.SQUARE)


def test_empty_value_keeps_the_default(tmp_path):
    config = load(tmp_path, "[properties]\nbind_port =\nmax_age = # none\n" + MINIMAL)
    assert config.settings.bind_port == 6776
    assert config.settings.max_age == 0


@pytest.mark.parametrize(
    ("root", "expected"),
    [("/", "/"), ("", "/"), ("photos", "/photos/"), ("photos/", "/photos/"), ("/a/b/", "/a/b/")],
)
def test_origin_root_is_normalised(tmp_path, root, expected):
    config = load(tmp_path, f"[master]\nhost = example.com\nroot = {root}\n[sizes]\ns = 10\n")
    assert config.master is not None
    assert config.master.root == expected
    assert config.warnings == ()


def test_origin_defaults_and_scheme(tmp_path):
    text = """\
    [master]
    host = example.com
    [slave-1]
    host = backup.example.com
    port = 8443
    scheme = HTTPS
    [sizes]
    s = 10
    """
    config = load(tmp_path, text)
    assert config.master is not None
    assert (config.master.scheme, config.master.port, config.master.root) == ("http", 80, "/")
    (slave,) = config.slaves
    assert (slave.scheme, slave.host, slave.port) == ("https", "backup.example.com", 8443)


def test_slave_sections_are_recognised_case_insensitively(tmp_path):
    text = """\
    [Master]
    host = a.example.com
    [SLAVE-1]
    host = b.example.com
    [slave_two]
    host = c.example.com
    [sizes]
    s = 10
    """
    config = load(tmp_path, text)
    assert config.master is not None
    assert config.master.host == "a.example.com"
    assert [s.host for s in config.slaves] == ["b.example.com", "c.example.com"]


def test_slaves_without_master(tmp_path):
    config = load(tmp_path, "[slave-1]\nhost = b.example.com\n[sizes]\ns = 10\n")
    assert config.master is None
    assert [o.host for o in config.origins] == ["b.example.com"]


def test_directory_origin_is_relative_to_the_config_folder(tmp_path, monkeypatch):
    conf_dir = tmp_path / "etc"
    (conf_dir / "images").mkdir(parents=True)
    (tmp_path / "shared").mkdir()
    path = write(
        conf_dir,
        "[master]\ndirectory = images\n[slave-1]\ndirectory = ../shared\n[sizes]\ns = 10\n",
    )
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path)
    assert config.master is not None
    assert config.master.directory == os.path.realpath(conf_dir / "images")
    assert config.master.host is None
    assert config.slaves[0].directory == os.path.realpath(tmp_path / "shared")


def test_relative_config_path_resolves_directory_from_its_folder(tmp_path, monkeypatch):
    conf_dir = tmp_path / "etc"
    (conf_dir / "images").mkdir(parents=True)
    write(conf_dir, "[master]\ndirectory = images\n[sizes]\ns = 10\n")
    monkeypatch.chdir(tmp_path)
    config = load_config(os.path.join("etc", "phizer.conf"))
    assert config.master is not None
    assert config.master.directory == os.path.realpath(conf_dir / "images")


def test_absolute_directory_origin(tmp_path):
    images = tmp_path / "abs-images"
    images.mkdir()
    config = load(tmp_path, f"[master]\ndirectory = {images}\n[sizes]\ns = 10\n")
    assert config.master is not None
    assert config.master.directory == os.path.realpath(images)


def test_missing_directory_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no-such-dir"):
        load(tmp_path, "[master]\ndirectory = no-such-dir\n[sizes]\ns = 10\n")


@pytest.mark.parametrize(
    "origin",
    [
        "[master]\nport = 80\n",
        "[master]\nhost = example.com\ndirectory = .\n",
    ],
)
def test_origin_needs_exactly_one_of_host_or_directory(tmp_path, origin):
    with pytest.raises(ConfigError, match=r"\[master\]"):
        load(tmp_path, origin + "[sizes]\ns = 10\n")


def test_unknown_options_and_sections_are_warnings(tmp_path):
    text = """\
    [properties]
    num_procs = 4
    bind_port = 9000
    [master]
    host = example.com
    timeout = 3
    [sizes]
    s = 10x10 sharpen=1
    [extras]
    a = b
    """
    config = load(tmp_path, text)
    assert config.settings.bind_port == 9000
    joined = "\n".join(config.warnings)
    assert "num_procs" in joined
    assert "timeout" in joined
    assert "sharpen" in joined
    assert "extras" in joined
    assert len(config.warnings) == 4


@pytest.mark.parametrize(
    ("section", "option", "value"),
    [
        ("properties", "bind_port", "eighty"),
        ("properties", "image_quality", "high"),
        ("properties", "client_cache_size", "25 TB"),
        ("properties", "resized_cache_size", "lots"),
        ("properties", "log_level", "LOUD"),
        ("properties", "max_age", "-1 day"),
        ("properties", "origin_timeout", "0"),
        ("properties", "decode_memory_reserve", "1M"),
        ("properties", "decode_memory_reserve", "2G"),
        ("properties", "webp_quality", "101"),
        ("master", "port", "http"),
        ("sizes", "thumb", "100x100 format=gif"),
    ],
)
def test_malformed_value_names_section_option_and_value(tmp_path, section, option, value):
    sections = {
        "properties": {},
        "master": {"host": "example.com"},
        "sizes": {"s": "10"},
    }
    sections[section][option] = value
    text = "".join(
        f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in opts.items())
        for name, opts in sections.items()
    )
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    message = str(caught.value)
    assert f"[{section}]" in message
    assert option in message
    assert value in message


def test_bad_host_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="host"):
        load(tmp_path, "[master]\nhost = http://example.com/\n[sizes]\ns = 10\n")


def test_bad_scheme_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="scheme"):
        load(tmp_path, "[master]\nhost = example.com\nscheme = ftp\n[sizes]\ns = 10\n")


def test_missing_file_names_the_file(tmp_path):
    path = str(tmp_path / "nowhere" / "phizer.conf")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert path in message
    assert "\n" not in message


def test_unparseable_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"phizer\.conf"):
        load(tmp_path, "this is not an ini file\n")


def test_duplicate_section_is_merged_with_a_warning(tmp_path):
    config = load(tmp_path, MINIMAL + "[master]\nport = 8080\n")
    assert config.master is not None
    assert (config.master.host, config.master.port) == ("images.example.com", 8080)
    (warning,) = config.warnings
    assert "[master]" in warning and "line 6" in warning and "line 1" in warning


def test_non_utf8_file_is_a_config_error(tmp_path):
    path = tmp_path / "phizer.conf"
    path.write_bytes(b"[master]\nhost = \xff\xfe\n[sizes]\ns = 10\n")
    with pytest.raises(ConfigError):
        load_config(str(path))


def test_no_sizes_section_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="sizes"):
        load(tmp_path, "[master]\nhost = example.com\n")


def test_empty_sizes_section_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="sizes"):
        load(tmp_path, "[master]\nhost = example.com\n[sizes]\n# nothing yet\n")


def test_no_origin_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="origin"):
        load(tmp_path, "[properties]\nbind_port = 80\n[sizes]\ns = 10\n")


def test_size_codes_are_lower_cased(tmp_path):
    config = load(tmp_path, "[master]\nhost = example.com\n[sizes]\nS220 = 220x220\n")
    assert list(config.sizes) == ["s220"]
    assert config.sizes["s220"].code == "s220"


def test_sizes_are_read_only(tmp_path):
    config = load(tmp_path, MINIMAL)
    with pytest.raises(TypeError):
        config.sizes["new"] = SizeSpec("new", 1, 1)  # type: ignore[index]


def test_with_overrides_replaces_given_values_only(tmp_path):
    config = load(tmp_path, LEGACY)
    changed = with_overrides(
        config, bind_port=7000, num_workers=2, max_age=None, log_level=logging.DEBUG
    )
    assert changed.settings.bind_port == 7000
    assert changed.settings.num_workers == 2
    assert changed.settings.log_level == logging.DEBUG
    assert changed.settings.max_age == config.settings.max_age == 0
    assert changed.settings.bind_host == "0.0.0.0"
    assert changed.sizes == config.sizes
    assert changed.origins == config.origins
    # The original is frozen and untouched.
    assert config.settings.bind_port == 9000


def test_with_overrides_accepts_false_and_zero(tmp_path):
    config = load(tmp_path, "[properties]\ndisable_cache = true\nmax_age = 60\n" + MINIMAL)
    changed = with_overrides(config, disable_cache=False, max_age=0)
    assert changed.settings.disable_cache is False
    assert changed.settings.max_age == 0


def test_with_overrides_without_values_returns_the_same_config(tmp_path):
    config = load(tmp_path, MINIMAL)
    assert with_overrides(config, bind_port=None, max_age=None) is config


# --- image fidelity and formats ----------------------------------------------------


def test_format_properties_default(tmp_path):
    settings = load(tmp_path, MINIMAL).settings
    assert settings.keep_icc is True
    assert settings.strip_metadata is True
    assert settings.animated is False
    assert settings.max_frames == 100
    assert settings.progressive is False
    assert settings.auto_format == ()  # negotiation off
    assert settings.webp_quality is None  # mapped from the JPEG quality
    assert settings.avif_quality is None


def test_every_format_property_is_parsed(tmp_path):
    text = """\
    [properties]
    keep_icc = no
    strip_metadata = off
    animated = yes
    max_frames = 24
    progressive = true
    auto_format = avif, webp
    webp_quality = 81
    avif_quality = 55 # measured
    """
    settings = load(tmp_path, text + MINIMAL).settings
    assert settings == Settings(
        num_workers=settings.num_workers,
        keep_icc=False,
        strip_metadata=False,
        animated=True,
        max_frames=24,
        progressive=True,
        auto_format=("AVIF", "WEBP"),
        webp_quality=81,
        avif_quality=55,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("avif, webp", ("AVIF", "WEBP")),
        ("avif,webp", ("AVIF", "WEBP")),
        ("webp avif", ("WEBP", "AVIF")),  # the operator's order is the preference
        ("WebP", ("WEBP",)),
        ("AVIF", ("AVIF",)),
        ("avif, avif, webp", ("AVIF", "WEBP")),
        ("avif, webp, # both", ("AVIF", "WEBP")),
        ("none", ()),
        ("off", ()),
        ("false", ()),
        ("", ()),
    ],
)
def test_auto_format_values(tmp_path, value, expected):
    config = load(tmp_path, f"[properties]\nauto_format = {value}\n" + MINIMAL)
    assert config.settings.auto_format == expected
    assert config.warnings == ()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("auto_format", "jpeg"),
        ("auto_format", "avif, gif"),
        ("auto_format", "heic"),
        ("auto_format", "avif, none"),
        ("auto_format", "image/avif"),
        ("keep_icc", "maybe"),
        ("strip_metadata", "2"),
        ("animated", "sometimes"),
        ("progressive", "interlaced"),
        ("max_frames", "0"),
        ("max_frames", "10001"),
        ("max_frames", "many"),
        ("webp_quality", "0"),
        ("webp_quality", "101"),
        ("avif_quality", "high"),
        ("avif_quality", "-5"),
    ],
)
def test_malformed_format_property_names_option_and_value(tmp_path, option, value):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, f"[properties]\n{option} = {value}\n" + MINIMAL)
    message = str(caught.value)
    assert "[properties]" in message
    assert option in message
    assert value in message


@pytest.mark.parametrize(("value", "frames"), [("1", 1), ("10000", 10000)])
def test_max_frames_bounds_are_inclusive(tmp_path, value, frames):
    config = load(tmp_path, f"[properties]\nmax_frames = {value}\n" + MINIMAL)
    assert config.settings.max_frames == frames


def test_size_options_from_a_file(tmp_path):
    text = """\
    [master]
    host = images.example.com

    [sizes]
    card = 400x300 landscape format=webp quality=70 # for the feed
    logo = 200 format=png background=#102030 upscale=no
    hero = 1600x900 progressive=yes sharpen=1
    """
    config = load(tmp_path, text)
    assert config.sizes["card"] == SizeSpec(
        "card", 400, 300, Constraint.LANDSCAPE, quality=70, output_format="WEBP"
    )
    assert config.sizes["logo"] == SizeSpec(
        "logo", 200, 200, output_format="PNG", upscale=False, background=(16, 32, 48)
    )
    assert config.sizes["hero"] == SizeSpec("hero", 1600, 900, progressive=True)
    assert len(config.warnings) == 1
    assert "[sizes] hero" in config.warnings[0]
    assert "sharpen" in config.warnings[0]


@pytest.mark.parametrize(
    "value", ["96x96 format=gif", "96x96 upscale=maybe", "96x96 background=#ggg"]
)
def test_malformed_size_option_names_the_size_and_the_reason(tmp_path, value):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, f"[master]\nhost = example.com\n[sizes]\nthumb = {value}\n")
    message = str(caught.value)
    assert "[sizes] thumb" in message
    assert value in message
    assert "expected" in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", 32 * MIB), ("2M", 2 * MIB), ("64 MiB", 64 * MIB), ("1G", 1024 * MIB)],
)
def test_decode_memory_reserve(tmp_path, value, expected):
    text = f"""\
    [properties]
    decode_memory_reserve = {value}

    [master]
    host = images.example.com

    [sizes]
    s100 = 100x100
    """
    assert load(tmp_path, text).settings.decode_memory_reserve == expected
