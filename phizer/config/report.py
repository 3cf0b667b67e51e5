"""``--check-config``: the resolved config as an operator wants to read it."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network
from logging.handlers import SysLogHandler

from phizer import __version__
from phizer.config.loader import Config, Settings
from phizer.config.sizes import Constraint, SizeSpec
from phizer.engine.detect import detect
from phizer.process.service import listeners_for

BYTE_SETTINGS = frozenset({"client_cache_size", "resized_cache_size", "max_source_bytes"})
# Reversed with the first name winning: "auth" rather than its alias "security".
_FACILITY_NAMES = {
    number: name for name, number in reversed(SysLogHandler.facility_names.items())
}
_SYSLOG_PRIORITY_NAMES = {
    logging.CRITICAL: "LOG_CRIT",
    logging.ERROR: "LOG_ERR",
    logging.WARNING: "LOG_WARNING",
    logging.INFO: "LOG_INFO",
    logging.DEBUG: "LOG_DEBUG",
}
_UNITS = (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))


def render(config: Config, path: str) -> str:
    settings = config.settings
    sections = [
        [f"phizer {__version__}: {path} is valid"],
        ["imaging engine", *_engine()],
        ["[properties]", *_properties(settings)],
        ["origins (the master first, then every slave at once)", *_origins(config)],
        ["sizes", *_sizes(config)],
        ["processes", *_processes(config)],
        ["caches", *_caches(settings)],
        ["cache tiers (the front's results, the workers' originals)", *_tiers(config)],
        ["warnings", *_indent(config.warnings or ["none"])],
    ]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def human_bytes(count: int) -> str:
    """``26214400`` -> ``25 MiB``; inexact values keep the byte count too."""
    for unit, factor in _UNITS:
        if count >= factor:
            if count % factor == 0:
                return f"{count // factor} {unit}"
            return f"{count / factor:.1f} {unit} ({count} bytes)"
    return f"{count} bytes"


def format_setting(name: str, value: object) -> str:
    if name in BYTE_SETTINGS and isinstance(value, int):
        return human_bytes(value)
    if name == "canvas_color" and isinstance(value, tuple):
        return "#" + "".join(f"{channel:02x}" for channel in value)
    if name in ("log_level", "log_level_worker") and isinstance(value, int):
        return logging.getLevelName(value)
    if name == "syslog_facility":
        if not isinstance(value, int):
            return "none"
        return f"LOG_{_FACILITY_NAMES.get(value, str(value)).upper()}"
    if name == "syslog_priority" and isinstance(value, int):
        return _SYSLOG_PRIORITY_NAMES.get(value, logging.getLevelName(value))
    if name == "syslog_address" and isinstance(value, tuple):
        return f"{value[0]}:{value[1]}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}s"
    if isinstance(value, tuple) and all(isinstance(v, IPv4Network | IPv6Network) for v in value):
        return ", ".join(str(network) for network in value) or "none"
    return str(value)


def _properties(settings: Settings) -> list[str]:
    names = [f.name for f in dataclasses.fields(settings)]
    width = max(map(len, names))
    return [f"{name:<{width}} = {format_setting(name, getattr(settings, name))}" for name in names]


def _origins(config: Config) -> list[str]:
    return _indent(origin.describe() for origin in config.origins)


def _sizes(config: Config) -> list[str]:
    specs = list(config.sizes.values())
    width = max(len(spec.code) for spec in specs)
    return _indent(
        f"{spec.code:<{width}}  {spec.width} x {spec.height} {spec.constraint.value}: "
        f"{describe_size(spec, config.settings)}"
        for spec in specs
    )


def describe_size(spec: SizeSpec, settings: Settings) -> str:
    w, h = spec.width, spec.height
    if max(w, h) >= settings.max_dimension:
        return f"the original, unresized (a side >= max_dimension {settings.max_dimension})"
    geometry = {
        Constraint.MAX: f"fit inside {w}x{h} keeping the aspect ratio",
        Constraint.SQUARE: f"the centre square, scaled to {w}x{h}",
        Constraint.PORTRAIT: f"height {h}, width cropped to at most {w}",
        Constraint.LANDSCAPE: f"width {w}, height cropped to at most {h}",
    }[spec.constraint]
    quality = spec.quality if spec.quality is not None else settings.image_quality
    parts = [geometry, f"quality {quality}"]
    parts.append(f"as {spec.output_format}" if spec.output_format else "in the source's format")
    if not spec.upscale:
        parts.append("never enlarged")
    progressive = settings.progressive if spec.progressive is None else spec.progressive
    parts.append("progressive JPEG" if progressive else "baseline JPEG")
    if spec.background is not None:
        red, green, blue = spec.background
        parts.append(f"background #{red:02x}{green:02x}{blue:02x}")
    return ", ".join(parts)


def _processes(config: Config) -> list[str]:
    lines = []
    for index, listener in enumerate(listeners_for(config)):
        role = "front" if index == 0 else f"worker {index}"
        lines.append(f"{role:<10} {listener.host}:{listener.port}")
    budget = format_setting("worker_timeout", config.settings.worker_timeout)
    lines.append(f"front-to-worker timeout {budget}")
    return _indent(lines)


def _caches(settings: Settings) -> list[str]:
    if settings.disable_cache:
        return _indent(["off (disable_cache = true)"])
    workers = settings.num_workers
    total = settings.resized_cache_size + workers * settings.client_cache_size
    return _indent(
        [
            f"front, finished images: {human_bytes(settings.resized_cache_size)}",
            f"each worker, originals: {human_bytes(settings.client_cache_size)} "
            f"({workers} workers: {human_bytes(workers * settings.client_cache_size)})",
            f"at most {human_bytes(total)} of cached images in all",
        ]
    )


def _tiers(config: Config) -> list[str]:
    cache = config.cache
    if config.settings.disable_cache:
        return _indent(["off (disable_cache = true)"])
    lines = []
    if cache.disk_cache_dir is not None:
        lines.append(f"disk: {cache.disk_cache_dir}, at most {human_bytes(cache.disk_cache_size)}")
    if cache.shared is not None:
        lines.append(
            f"shared: {cache.shared.describe()}, entries kept {cache.shared_ttl}s, "
            f"timeout {format_setting('shared_timeout', cache.shared_timeout)}"
        )
    return _indent(lines or ["none (memory only)"])


def _engine() -> list[str]:
    return _indent([detect().describe()])


def _indent(lines: Iterable[str]) -> list[str]:
    return [f"  {line}" for line in lines]
