"""The config file: read once, validated, turned into frozen dataclasses."""

from __future__ import annotations

import configparser
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address
from types import MappingProxyType
from typing import Any

from phizer.config import inifile, values
from phizer.config.options import CACHE, PROPERTIES, CacheTiers, Legacy, Option, Settings
from phizer.config.origin_options import (
    BUCKET_OPTIONS,
    BucketSpec,
    RedirectHost,
    check_no_bucket_options,
    parse_bucket,
    parse_redirect_hosts,
)
from phizer.config.sizes import SizeSpec, SkippedSize, parse_size_spec
from phizer.errors import ConfigError

BIND_HOST_WARNING = "[properties] bind_host = "
# A value replaced by its option's default (the warning is given).
_DEFAULT: Any = object()
_ORIGIN_OPTIONS = frozenset(
    {"host", "port", "root", "scheme", "directory", "redirect_hosts", *BUCKET_OPTIONS}
)
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


@dataclass(frozen=True)
class OriginSpec:
    """One origin: an HTTP server (``host``), a local ``directory`` or a ``bucket``."""

    name: str
    host: str | None = None
    port: int = 80
    root: str = "/"
    scheme: str = "http"
    directory: str | None = None
    bucket: BucketSpec | None = None
    # Hosts besides its own that this origin's redirects may lead to.
    redirect_hosts: tuple[RedirectHost, ...] = ()

    def describe(self) -> str:
        if self.directory is not None:
            return f"[{self.name}] directory {self.directory}"
        if self.bucket is not None:
            where = f"[{self.name}] bucket {self.bucket.location}"
        else:
            where = f"[{self.name}] {self.scheme}://{self.host}:{self.port}{self.root}"
        if self.redirect_hosts:
            where += f", redirects also to {', '.join(map(str, self.redirect_hosts))}"
        return where


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
    """Read and validate ``path``; raises ``ConfigError`` naming what is wrong.

    What the 2012 phizer started with starts this one too: what it skipped
    or merged is skipped or merged the same way, with a warning each.
    """
    parser = inifile.new_parser()
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        parser.read_string(text, source=path)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    except configparser.Error as err:
        raise ConfigError(f"{path}: {' '.join(str(err).split())}") from None
    base_dir = os.path.dirname(os.path.abspath(path))
    return parse_config(parser, base_dir, inifile.layout(text))


def parse_config(
    parser: configparser.ConfigParser, base_dir: str, layout: inifile.Layout | None = None
) -> Config:
    reader = _Reader(parser, layout or _layout_of(parser))
    settings = reader.settings()
    master = None
    slaves = []
    for section in parser.sections():
        name = section.lower()
        if name == "master":
            master = reader.origin(section, base_dir)
        elif name.startswith("slave"):
            slaves.append(reader.origin(section, base_dir))
        elif name not in ("properties", "sizes", "cache"):
            reader.warnings.append(f"ignoring unknown section [{section}]")
    if master is None and not slaves:
        raise ConfigError("no origin configured: add a [master] section")
    sizes = reader.sizes()
    cache = reader.cache(base_dir)
    return Config(settings, master, tuple(slaves), sizes, tuple(reader.warnings), cache)


def _layout_of(parser: configparser.ConfigParser) -> inifile.Layout:
    """For a parser not read from a file: every option is its section's own."""
    own = {section: set(parser.options(section)) for section in parser.sections()}
    return inifile.Layout(own=own)


def _parse_value(section: str, option: str, raw: str, parse: Any) -> Any:
    try:
        return parse(raw)
    except ValueError as err:
        raise ConfigError(f"[{section}] {option} = {raw!r}: {err}") from None


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower().rstrip(".")
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ip_address(name).is_loopback
    except ValueError:
        return False


class _Reader:
    """The sections of one parsed file, and the warnings they give."""

    def __init__(self, parser: configparser.ConfigParser, layout: inifile.Layout) -> None:
        self.parser = parser
        self.layout = layout
        self.warnings: list[str] = list(layout.warnings)

    def options(self, section: str) -> dict[str, str]:
        """The section's values, ``[DEFAULT]`` included, ``%(name)s`` expanded."""
        if not self.parser.has_section(section):
            return {}
        try:
            items = self.parser.items(section)
        except configparser.InterpolationError as err:
            message = " ".join(str(err).split())
            raise ConfigError(f"[{section}] {err.option}: {message}") from None
        return {key: values.strip_comment(raw) for key, raw in items}

    def unknown(self, section: str, name: str) -> None:
        # Options only [DEFAULT] gives every section are warned about once, there.
        if name in self.layout.own_options(section):
            self.warnings.append(f"ignoring unknown option [{section}] {name}")

    def declared(
        self, section: str, raw_options: dict[str, str], declared: Mapping[str, Option]
    ) -> dict[str, Any]:
        """The values given for declared options; an empty value keeps the default."""
        parsed: dict[str, Any] = {}
        for name, raw in raw_options.items():
            declaration = declared.get(name)
            if declaration is None:
                self.unknown(section, name)
            elif raw != "":
                value = self.value(section, declaration, raw)
                if value is not _DEFAULT:
                    parsed[name] = value
        return parsed

    def value(self, section: str, declaration: Option, raw: str) -> Any:
        """The value, or ``_DEFAULT`` (with a warning) when the 2012 phizer
        started with a value this one cannot honour."""
        converted = False
        try:
            value = declaration.convert(raw)
            converted = True
            declaration.check(value)
        except ValueError as err:
            lenient = declaration.legacy is Legacy.UNCHECKED or (
                declaration.legacy is Legacy.TYPED and converted
            )
            if not lenient:
                written = "(hidden)" if declaration.kind.hidden else repr(raw)
                raise ConfigError(f"[{section}] {declaration.name} = {written}: {err}") from None
            default = declaration.show(declaration.default_value())
            self.warnings.append(
                f"[{section}] {declaration.name} = {raw!r}: {err}; using the default instead "
                f"(write {declaration.name} = {default}, or a valid value)"
            )
            return _DEFAULT
        return value

    def settings(self) -> Settings:
        parsed = self.declared("properties", self.options("properties"), PROPERTIES)
        host = parsed.get("bind_host")
        if host is not None and is_loopback(host):
            self.warnings.append(
                f"{BIND_HOST_WARNING}{host}: the 2012 phizer ignored bind_host and "
                "listened on every interface, and so does phizer unless -H is given: remove "
                f"the line, or start phizer with -H {host} to listen on loopback only"
            )
            del parsed["bind_host"]
        return Settings(**parsed)

    def origin(self, section: str, base_dir: str) -> OriginSpec:
        options = self.options(section)
        for option in sorted(set(options) - _ORIGIN_OPTIONS):
            self.unknown(section, option)
        host = options.get("host") or None
        directory = options.get("directory") or None
        bucket = options.get("s3_bucket") or None
        if [host, directory, bucket].count(None) != 2:
            raise ConfigError(f"[{section}] needs exactly one of host, directory or s3_bucket")
        redirect_hosts = parse_redirect_hosts(section, options.get("redirect_hosts") or "")
        if bucket is not None:
            return OriginSpec(
                section, bucket=parse_bucket(section, options), redirect_hosts=redirect_hosts
            )
        check_no_bucket_options(section, options)
        if directory is not None:
            if redirect_hosts:
                raise ConfigError(f"[{section}] redirect_hosts: a directory does not redirect")
            resolved = os.path.realpath(os.path.join(base_dir, os.path.expanduser(directory)))
            if not os.path.isdir(resolved):
                raise ConfigError(f"[{section}] directory = {directory!r}: not a directory")
            return OriginSpec(section, directory=resolved)
        assert host is not None
        port = _parse_value(section, "port", options.get("port") or "80", values.parse_port)
        scheme = (options.get("scheme") or "http").lower()
        if scheme not in ("http", "https"):
            raise ConfigError(f"[{section}] scheme = {scheme!r}: expected http or https")
        if any(c in host for c in "/?#@ ") or not host.isprintable():
            raise ConfigError(f"[{section}] host = {host!r}: expected a host name or address")
        root = self.root(section, options.get("root") or "/")
        return OriginSpec(section, host, port, root, scheme, redirect_hosts=redirect_hosts)

    def root(self, section: str, written: str) -> str:
        """The path prefix of every URL, resolved as the 2012 phizer did: it
        joined ``root`` and the file as URLs, so ``/sub`` (no trailing
        slash) lost its last segment and fetched ``/file``."""
        if written.startswith("/") and not written.endswith("/"):
            kept = written[: written.rindex("/") + 1]
            self.warnings.append(
                f"[{section}] root = {written}: without a trailing slash the 2012 phizer "
                f"fetched {kept}<file>, not {written}/<file>, and so does phizer; write "
                f"root = {kept} to keep that, or root = {written}/ for the other"
            )
            written = kept
        root = "/" + written.strip("/") + "/"
        return root.replace("//", "/")

    def cache(self, base_dir: str) -> CacheTiers:
        names = self.parser.sections()
        section = next((name for name in names if name.lower() == "cache"), None)
        if section is None:
            return CacheTiers()
        # "none" leaves any [cache] option at its default (an unset tier).
        raw_options = {
            name: "" if raw.lower() == "none" else raw
            for name, raw in self.options(section).items()
        }
        parsed = self.declared(section, raw_options, CACHE)
        directory = parsed.get("disk_cache_dir")
        if directory is not None:
            parsed["disk_cache_dir"] = _cache_directory(section, directory, base_dir)
        return CacheTiers(**parsed)

    def sizes(self) -> Mapping[str, SizeSpec]:
        sizes: dict[str, SizeSpec] = {}
        own = self.layout.own_options("sizes")
        for code, raw in self.options("sizes").items():
            if code not in own:
                continue  # given by [DEFAULT]: a variable, not a size
            try:
                spec, spec_warnings = parse_size_spec(code, raw)
            except SkippedSize as err:
                self.warnings.append(
                    f"[sizes] {code} = {raw!r}: {err}; skipped, as the 2012 phizer did "
                    f"(/{code}/... answers 404)"
                )
                continue
            except ValueError as err:
                raise ConfigError(f"[sizes] {code} = {raw!r}: {err}") from None
            self.warnings.extend(f"[sizes] {code}: {w}" for w in spec_warnings)
            sizes[code] = spec
        if not sizes:
            raise ConfigError("no sizes configured: add a [sizes] section")
        return MappingProxyType(sizes)


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


def with_overrides(config: Config, **overrides: Any) -> Config:
    """Apply command-line overrides (``None`` means not given)."""
    given = {key: value for key, value in overrides.items() if value is not None}
    if not given:
        return config
    warnings = config.warnings
    if "bind_host" in given:  # the file's bind_host no longer matters
        warnings = tuple(w for w in warnings if not w.startswith(BIND_HOST_WARNING))
    settings = dataclasses.replace(config.settings, **given)
    return dataclasses.replace(config, settings=settings, warnings=warnings)
