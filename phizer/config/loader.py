"""The config file: read once, validated, turned into frozen dataclasses."""

from __future__ import annotations

import configparser
import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from types import MappingProxyType
from typing import Any

from phizer.config import values
from phizer.config.addresses import SharedAddress, parse_shared_address
from phizer.config.sizes import SizeSpec, parse_size_spec
from phizer.errors import ConfigError

MIB = 1024 * 1024


def default_num_workers() -> int:
    return max(1, (os.cpu_count() or 1) - 1)


@dataclass(frozen=True)
class Settings:
    """The ``[properties]`` section (see SPEC section 3 for the meanings)."""

    bind_host: str = "localhost"
    bind_port: int = 6776
    canvas_color: tuple[int, int, int] = (255, 255, 255)
    client_cache_size: int = 25 * MIB
    debug: bool = False
    disable_cache: bool = False
    image_quality: int = 95
    keep_alive: bool = False
    log_level: int = logging.WARNING
    log_level_worker: int = logging.WARNING
    max_age: int = 0
    max_dimension: int = 3000
    max_inflight_requests: int = 100
    max_worker_queue: int = 64
    num_workers: int = field(default_factory=default_num_workers)
    resized_cache_size: int = 100 * MIB
    decoded_cache_size: int = 128 * MIB
    syslog_facility: int | None = None
    syslog_priority: int = logging.ERROR
    origin_connect_timeout: float = 3.0
    origin_timeout: float = 10.0
    # Hardening limits.
    max_source_bytes: int = 50 * MIB
    max_source_pixels: int = 50_000_000
    max_jpeg_scans: int = 64
    max_chunks: int = 10_000
    decode_timeout: float = 10.0
    client_timeout: float = 10.0
    max_client_connections: int = 4096
    # Image fidelity and formats.
    keep_icc: bool = True
    strip_metadata: bool = True
    animated: bool = False
    max_frames: int = 100
    progressive: bool = False
    # Formats offered to browsers that accept them, in order (e.g. AVIF, WEBP).
    auto_format: tuple[str, ...] = ()
    # None: calibrated from the JPEG quality in use (see phizer.qualities).
    webp_quality: int | None = None
    avif_quality: int | None = None
    # Operations.
    shutdown_timeout: float = 10.0
    # Freed decode memory each worker keeps for its next decode (phizer.heaptrim).
    decode_memory_reserve: int = 32 * MIB
    syslog_address: str | tuple[str, int] = "/dev/log"
    log_format: str = "text"
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    admin_allow: tuple[IPv4Network | IPv6Network, ...] = (
        ip_network("127.0.0.0/8"),
        ip_network("::1/128"),
    )

    @property
    def worker_timeout(self) -> float:
        """Front-to-worker budget: a little above the worst origin fetch."""
        return self.origin_connect_timeout + self.origin_timeout + 5.0


_SETTING_PARSERS: dict[str, Callable[[str], Any]] = {
    "bind_host": values.parse_non_empty,
    "bind_port": values.parse_port,
    "canvas_color": values.parse_color,
    "client_cache_size": values.parse_byte_size,
    "debug": values.parse_bool,
    "disable_cache": values.parse_bool,
    "image_quality": lambda v: values.parse_int(v, 1, 100),
    "keep_alive": values.parse_bool,
    "log_level": values.parse_log_level,
    "log_level_worker": values.parse_log_level,
    "max_age": lambda v: values.parse_int(v, 0),
    "max_dimension": lambda v: values.parse_int(v, 1),
    "max_inflight_requests": lambda v: values.parse_int(v, 1, 10_000),
    "max_worker_queue": lambda v: values.parse_int(v, 1, 100_000),
    "num_workers": lambda v: values.parse_int(v, 1, 256),
    "resized_cache_size": values.parse_byte_size,
    "decoded_cache_size": values.parse_byte_size,
    "syslog_facility": values.parse_syslog_facility,
    "syslog_priority": values.parse_syslog_priority,
    "origin_connect_timeout": values.parse_seconds,
    "origin_timeout": values.parse_seconds,
    "max_source_bytes": lambda v: _at_least(values.parse_byte_size(v), 1),
    "max_source_pixels": lambda v: values.parse_int(v, 1),
    "max_jpeg_scans": lambda v: values.parse_int(v, 1, 100_000),
    "max_chunks": lambda v: values.parse_int(v, 16, 100_000_000),
    "decode_timeout": values.parse_seconds,
    "client_timeout": values.parse_seconds,
    "max_client_connections": lambda v: values.parse_int(v, 16, 1_000_000),
    "keep_icc": values.parse_bool,
    "strip_metadata": values.parse_bool,
    "animated": values.parse_bool,
    "max_frames": lambda v: values.parse_int(v, 1, 10_000),
    "progressive": values.parse_bool,
    "auto_format": values.parse_auto_format,
    "webp_quality": lambda v: values.parse_int(v, 1, 100),
    "avif_quality": lambda v: values.parse_int(v, 1, 100),
    "shutdown_timeout": values.parse_seconds,
    "decode_memory_reserve": lambda v: _byte_range(values.parse_byte_size(v), 2 * MIB, 1024 * MIB),
    "syslog_address": values.parse_syslog_address,
    "log_format": lambda v: values.parse_choice(v, ("text", "json")),
    "trusted_proxies": values.parse_networks,
    "admin_allow": values.parse_networks,
}


def _byte_range(number: int, minimum: int, maximum: int) -> int:
    if not minimum <= number <= maximum:
        raise ValueError(f"must be between {minimum // MIB} MiB and {maximum // MIB} MiB")
    return number


def _at_least(number: int, minimum: int) -> int:
    if number < minimum:
        raise ValueError(f"must be at least {minimum}")
    return number


@dataclass(frozen=True)
class OriginSpec:
    """One origin: an HTTP server (``host``) or a local ``directory``."""

    name: str
    host: str | None = None
    port: int = 80
    root: str = "/"
    scheme: str = "http"
    directory: str | None = None

    def describe(self) -> str:
        if self.directory is not None:
            return f"[{self.name}] directory {self.directory}"
        return f"[{self.name}] {self.scheme}://{self.host}:{self.port}{self.root}"


@dataclass(frozen=True)
class CacheTiers:
    """The optional ``[cache]`` section: the tiers below the memory caches."""

    shared: SharedAddress | None = None
    # Seconds an entry is kept by the shared tier and trusted on disk.
    shared_ttl: int = 86400
    # Socket timeout of every shared-tier call: a LAN Redis or memcached
    # answers in well under a millisecond, while a miss costs a resize or an
    # origin fetch of tens of milliseconds; past 0.1 s waiting no longer pays.
    shared_timeout: float = 0.1
    disk_cache_dir: str | None = None  # absolute, created and writable
    disk_cache_size: int = 1024 * MIB


_CACHE_PARSERS: dict[str, Callable[[str], Any]] = {
    "shared": parse_shared_address,
    "shared_ttl": lambda v: values.parse_int(v, 0, 10 * 365 * 86400),
    "shared_timeout": lambda v: _at_most(values.parse_seconds(v), 10.0),
    "disk_cache_dir": values.parse_non_empty,
    "disk_cache_size": values.parse_byte_size,
}


def _at_most(number: float, maximum: float) -> float:
    if number > maximum:
        raise ValueError(f"must be at most {maximum:g}")
    return number


@dataclass(frozen=True)
class Config:
    settings: Settings
    master: OriginSpec | None
    slaves: tuple[OriginSpec, ...]
    sizes: Mapping[str, SizeSpec]
    warnings: tuple[str, ...] = ()
    cache: CacheTiers = CacheTiers()

    @property
    def origins(self) -> tuple[OriginSpec, ...]:
        return ((self.master,) if self.master else ()) + self.slaves


def load_config(path: str) -> Config:
    """Read and validate ``path``; raises ``ConfigError`` naming what is wrong."""
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    except configparser.Error as err:
        raise ConfigError(f"{path}: {' '.join(str(err).split())}") from None
    base_dir = os.path.dirname(os.path.abspath(path))
    return parse_config(parser, base_dir)


def parse_config(parser: configparser.ConfigParser, base_dir: str) -> Config:
    warnings: list[str] = []
    settings = _parse_settings(parser, warnings)
    master = None
    slaves = []
    for section in parser.sections():
        name = section.lower()
        if name == "master":
            master = _parse_origin(parser, section, base_dir, warnings)
        elif name.startswith("slave"):
            slaves.append(_parse_origin(parser, section, base_dir, warnings))
        elif name not in ("properties", "sizes", "cache"):
            warnings.append(f"ignoring unknown section [{section}]")
    if master is None and not slaves:
        raise ConfigError("no origin configured: add a [master] section")
    sizes = _parse_sizes(parser, warnings)
    cache = _parse_cache(parser, base_dir, warnings)
    return Config(settings, master, tuple(slaves), sizes, tuple(warnings), cache)


def _raw_options(parser: configparser.ConfigParser, section: str) -> dict[str, str]:
    if not parser.has_section(section):
        return {}
    return {key: values.strip_comment(raw) for key, raw in parser.items(section)}


def _parse_value(section: str, option: str, raw: str, parse: Callable[[str], Any]) -> Any:
    try:
        return parse(raw)
    except ValueError as err:
        raise ConfigError(f"[{section}] {option} = {raw!r}: {err}") from None


def _parse_settings(parser: configparser.ConfigParser, warnings: list[str]) -> Settings:
    parsed: dict[str, Any] = {}
    for option, raw in _raw_options(parser, "properties").items():
        parse = _SETTING_PARSERS.get(option)
        if parse is None:
            warnings.append(f"ignoring unknown option [properties] {option}")
        elif raw != "":
            parsed[option] = _parse_value("properties", option, raw, parse)
    return Settings(**parsed)


def _parse_origin(
    parser: configparser.ConfigParser, section: str, base_dir: str, warnings: list[str]
) -> OriginSpec:
    options = _raw_options(parser, section)
    known = {"host", "port", "root", "scheme", "directory"}
    for option in sorted(set(options) - known):
        warnings.append(f"ignoring unknown option [{section}] {option}")
    host = options.get("host") or None
    directory = options.get("directory") or None
    if (host is None) == (directory is None):
        raise ConfigError(f"[{section}] needs exactly one of host or directory")
    if directory is not None:
        resolved = os.path.realpath(os.path.join(base_dir, os.path.expanduser(directory)))
        if not os.path.isdir(resolved):
            raise ConfigError(f"[{section}] directory = {directory!r}: not a directory")
        return OriginSpec(section, directory=resolved)
    port = _parse_value(section, "port", options.get("port") or "80", values.parse_port)
    scheme = (options.get("scheme") or "http").lower()
    if scheme not in ("http", "https"):
        raise ConfigError(f"[{section}] scheme = {scheme!r}: expected http or https")
    if any(c in host for c in "/?#@ ") or not host.isprintable():
        raise ConfigError(f"[{section}] host = {host!r}: expected a host name or address")
    root = "/" + (options.get("root") or "/").strip("/") + "/"
    return OriginSpec(section, host, port, root.replace("//", "/"), scheme)


def _parse_cache(
    parser: configparser.ConfigParser, base_dir: str, warnings: list[str]
) -> CacheTiers:
    section = next((name for name in parser.sections() if name.lower() == "cache"), None)
    if section is None:
        return CacheTiers()
    parsed: dict[str, Any] = {}
    for option, raw in _raw_options(parser, section).items():
        parse = _CACHE_PARSERS.get(option)
        if parse is None:
            warnings.append(f"ignoring unknown option [{section}] {option}")
        elif raw != "" and raw.lower() != "none":
            parsed[option] = _parse_value(section, option, raw, parse)
    directory = parsed.get("disk_cache_dir")
    if directory is not None:
        parsed["disk_cache_dir"] = _cache_directory(section, directory, base_dir)
    return CacheTiers(**parsed)


def _cache_directory(section: str, directory: str, base_dir: str) -> str:
    """Relative to the config file, like ``directory =`` origins; created if
    missing, and it must be writable by whoever reads the config."""
    resolved = os.path.realpath(os.path.join(base_dir, os.path.expanduser(directory)))
    try:
        os.makedirs(resolved, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"[{section}] disk_cache_dir = {directory!r}: cannot create it: {err.strerror}"
        ) from None
    if not os.path.isdir(resolved) or not os.access(resolved, os.W_OK | os.X_OK):
        raise ConfigError(f"[{section}] disk_cache_dir = {directory!r}: not a writable directory")
    return resolved


def _parse_sizes(parser: configparser.ConfigParser, warnings: list[str]) -> Mapping[str, SizeSpec]:
    sizes: dict[str, SizeSpec] = {}
    for code, raw in _raw_options(parser, "sizes").items():
        try:
            spec, spec_warnings = parse_size_spec(code, raw)
        except ValueError as err:
            raise ConfigError(f"[sizes] {code} = {raw!r}: {err}") from None
        warnings.extend(f"[sizes] {code}: {w}" for w in spec_warnings)
        sizes[code] = spec
    if not sizes:
        raise ConfigError("no sizes configured: add a [sizes] section")
    return MappingProxyType(sizes)


def with_overrides(config: Config, **overrides: Any) -> Config:
    """Apply command-line overrides (``None`` means not given)."""
    given = {key: value for key, value in overrides.items() if value is not None}
    if not given:
        return config
    return dataclasses.replace(config, settings=dataclasses.replace(config.settings, **given))
