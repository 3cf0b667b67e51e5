"""The config file: read once, validated, turned into frozen dataclasses."""

from __future__ import annotations

import configparser
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from phizer.config import values
from phizer.config.options import CACHE, PROPERTIES, CacheTiers, Option, Settings
from phizer.config.sizes import SizeSpec, parse_size_spec
from phizer.errors import ConfigError


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
class Config:
    settings: Settings
    master: OriginSpec | None
    slaves: tuple[OriginSpec, ...]
    sizes: Mapping[str, SizeSpec]
    warnings: tuple[str, ...] = ()
    cache: CacheTiers = field(default_factory=CacheTiers)

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


def _parse_value(section: str, option: str, raw: str, parse: Any) -> Any:
    try:
        return parse(raw)
    except ValueError as err:
        raise ConfigError(f"[{section}] {option} = {raw!r}: {err}") from None


def _parse_declared(
    section: str, raw_options: dict[str, str], declared: Mapping[str, Option], warnings: list[str]
) -> dict[str, Any]:
    """The values given for declared options; an empty value keeps the default."""
    parsed: dict[str, Any] = {}
    for name, raw in raw_options.items():
        declaration = declared.get(name)
        if declaration is None:
            warnings.append(f"ignoring unknown option [{section}] {name}")
        elif raw != "":
            parsed[name] = _parse_value(section, name, raw, declaration.parse)
    return parsed


def _parse_settings(parser: configparser.ConfigParser, warnings: list[str]) -> Settings:
    raw_options = _raw_options(parser, "properties")
    return Settings(**_parse_declared("properties", raw_options, PROPERTIES, warnings))


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
    # "none" leaves any [cache] option at its default (an unset tier).
    raw_options = {
        name: "" if raw.lower() == "none" else raw
        for name, raw in _raw_options(parser, section).items()
    }
    parsed = _parse_declared(section, raw_options, CACHE, warnings)
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
