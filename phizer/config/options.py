"""Every ``[properties]`` and ``[cache]`` option, declared once.

Each attribute of ``Settings`` and ``CacheTiers`` is declared with
``option(...)``: its kind (how the text is read and the value shown), its
default, range, help text and whether it changes the bytes of an output
image (``shapes_output``). Parsing, defaults, ``--check-config``, the
README tables and the tier keys' fingerprint are all derived from these
declarations, so an option cannot be documented, parsed or shown in
disagreement with itself.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from logging.handlers import SysLogHandler
from types import MappingProxyType
from typing import Any

from phizer.config import values
from phizer.config.addresses import SharedAddress, parse_shared_address

MIB = 1024 * 1024
_UNITS = (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))
# Reversed with the first name winning: "auth" rather than its alias "security".
_FACILITY_NAMES = {number: name for name, number in reversed(SysLogHandler.facility_names.items())}
_SYSLOG_PRIORITY_NAMES = {
    logging.CRITICAL: "LOG_CRIT",
    logging.ERROR: "LOG_ERR",
    logging.WARNING: "LOG_WARNING",
    logging.INFO: "LOG_INFO",
    logging.DEBUG: "LOG_DEBUG",
}


def human_bytes(count: int) -> str:
    """``26214400`` -> ``25 MiB``; inexact values keep the byte count too."""
    for unit, factor in _UNITS:
        if count >= factor:
            if count % factor == 0:
                return f"{count // factor} {unit}"
            return f"{count / factor:.1f} {unit} ({count} bytes)"
    return f"{count} byte" if count == 1 else f"{count} bytes"


def _show_seconds(value: float) -> str:
    return f"{value:g}s"


def _show_bool(value: bool) -> str:
    return "true" if value else "false"


def _show_color(value: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{channel:02x}" for channel in value)


def _show_facility(value: int) -> str:
    return f"LOG_{_FACILITY_NAMES.get(value, str(value)).upper()}"


def _show_priority(value: int) -> str:
    return _SYSLOG_PRIORITY_NAMES.get(value, logging.getLevelName(value))


def _show_address(value: str | tuple[str, int]) -> str:
    return value if isinstance(value, str) else f"{value[0]}:{value[1]}"


def _show_networks(value: tuple[IPv4Network | IPv6Network, ...]) -> str:
    return ", ".join(str(network) for network in value) or "none"


def _show_formats(value: tuple[str, ...]) -> str:
    return ", ".join(name.lower() for name in value) or "none"


def _show_interface(value: str) -> str:
    return value or "every interface"


@dataclass(frozen=True)
class Kind:
    """How an option's text is read (``convert`` raises ``ValueError`` with
    a reason) and how its value is shown, in the units an operator writes."""

    convert: Callable[[str], Any]
    show: Callable[[Any], str] = str
    unit: str = ""
    hidden: bool = False  # a secret: its text is never repeated, not even in an error


TEXT = Kind(values.parse_non_empty)
INTERFACE = Kind(values.parse_non_empty, _show_interface)
INTEGER = Kind(values.parse_int)
BYTES = Kind(values.parse_byte_size, human_bytes, "bytes")
SECONDS = Kind(values.parse_seconds, _show_seconds, "seconds")
BOOLEAN = Kind(values.parse_bool, _show_bool)
COLOR = Kind(values.parse_color, _show_color)
LOG_LEVEL = Kind(values.parse_log_level, logging.getLevelName)
SYSLOG_FACILITY = Kind(values.parse_syslog_facility, _show_facility)
SYSLOG_PRIORITY = Kind(values.parse_syslog_priority, _show_priority)
SYSLOG_ADDRESS = Kind(values.parse_syslog_address, _show_address)
NETWORKS = Kind(values.parse_networks, _show_networks)
AUTO_FORMAT = Kind(values.parse_auto_format, _show_formats)
SHARED = Kind(parse_shared_address, lambda address: address.describe())
# A secret is never shown, only whether there is one.
SECRET = Kind(values.parse_secret, lambda _: "set", hidden=True)


def choice(*names: str) -> Kind:
    return Kind(lambda text: values.parse_choice(text, names))


class Legacy(enum.Enum):
    """What the 2012 phizer did with the option, which decides what a bad
    value does here: stop phizer, or fall back to the default with a warning
    (a file that started the 2012 phizer must start this one)."""

    NEW = "new"  # not read in 2012: a bad value is an error
    TYPED = "typed"  # read as its type: a malformed value is an error, one out of range falls back
    UNCHECKED = "unchecked"  # any text started 2012: a bad value falls back


@dataclass(frozen=True)
class Option:
    """One option's declaration; ``name`` is the attribute it is declared on."""

    kind: Kind
    default: Any
    help: str
    name: str = ""
    minimum: int | float | None = None
    maximum: int | float | None = None
    shapes_output: bool = False
    legacy: Legacy = Legacy.NEW
    # How an unset value (None) reads, e.g. "none" or "mapped"; None: always set.
    unset: str | None = None
    # For the README, when the default is computed (``factory``) or a word.
    default_text: str | None = None
    factory: Callable[[], Any] | None = None

    def default_value(self) -> Any:
        return self.factory() if self.factory is not None else self.default

    def convert(self, text: str) -> Any:
        """The value written, or ``None`` for an unset optional value;
        raises ``ValueError`` when it is not of the option's kind."""
        if self.unset is not None and text.strip().lower() == "none":
            return None
        return self.kind.convert(text)

    def check(self, value: Any) -> None:
        """Raises ``ValueError`` when ``value`` is out of the option's range."""
        if value is None:
            return
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"must be at least {self.kind.show(self.minimum)}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"must be at most {self.kind.show(self.maximum)}")

    def parse(self, text: str) -> Any:
        value = self.convert(text)
        self.check(value)
        return value

    def show(self, value: Any) -> str:
        if value is None:
            return self.unset or "none"
        return self.kind.show(value)

    def range_text(self) -> str | None:
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            return f"{self.kind.show(low)} to {self.kind.show(high)}"
        if low is not None:
            return f"at least {self.kind.show(low)}"
        if high is not None:
            return f"at most {self.kind.show(high)}"
        return None

    def doc_default(self) -> str:
        if self.default_text is not None:
            return self.default_text
        if self.default is None:
            return self.show(None)
        return f"`{self.show(self.default)}`"


def option(kind: Kind, default: Any, help: str, **details: Any) -> Any:
    """A dataclass field carrying its ``Option`` declaration."""
    declared = Option(kind, default, help, **details)
    if declared.factory is not None:
        return dataclasses.field(default_factory=declared.factory, metadata={"option": declared})
    return dataclasses.field(default=default, metadata={"option": declared})


def default_num_workers() -> int:
    """Twice the cores: each photo is pinned to one worker, and with one
    worker per core a burst of photos that hash alike leaves a core idle
    (cold photos on 2 cores: 68 req/s with 2 workers, 74 with 3, 79 with 4;
    see bench/RESULTS.md). The 2012 default was CPUs - 1."""
    return 2 * (os.cpu_count() or 1)


_TYPED = Legacy.TYPED
_UNCHECKED = Legacy.UNCHECKED


@dataclass(frozen=True)
class Settings:
    """The ``[properties]`` section (README, "Configuration", says what each means)."""

    bind_host: str = option(
        INTERFACE,
        "",
        "front interface, e.g. `0.0.0.0` or `::`; the 2012 phizer ignored it, so a loopback "
        "address in the file is ignored too, with a warning (`-H` is always honoured)",
        default_text="every interface",
        legacy=_UNCHECKED,
    )
    bind_port: int = option(
        INTEGER,
        6776,
        "front port; worker i listens on `127.0.0.1:bind_port+i`",
        minimum=1,
        maximum=65535,
        legacy=_TYPED,
    )
    num_workers: int = option(
        INTEGER,
        None,
        "worker processes. Each photo is pinned to one worker (`crc32`), so with one worker "
        "per core a burst of photos that hash alike leaves a core idle; twice the cores evens "
        "that out (cold photos on 2 cores: 68 req/s with 2 workers, 74 with 3, 79 with 4, see "
        "bench/RESULTS.md) at some 35 MB of RSS and its own caches per worker; the 2012 "
        "default was CPUs - 1",
        minimum=1,
        maximum=256,
        factory=default_num_workers,
        default_text="twice the CPUs",
        legacy=_TYPED,
    )
    canvas_color: tuple[int, int, int] = option(
        COLOR,
        (255, 255, 255),
        "background when transparency must be flattened",
        shapes_output=True,
        legacy=_UNCHECKED,
    )
    client_cache_size: int = option(
        BYTES, 25 * MIB, "each worker's cache of originals", legacy=_TYPED
    )
    resized_cache_size: int = option(
        BYTES,
        100 * MIB,
        "the front's cache of finished images; `0` turns off this cache alone",
        legacy=_TYPED,
    )
    decoded_cache_size: int = option(
        BYTES,
        128 * MIB,
        "each worker's cache of decoded originals (see Architecture); `0` turns it off",
    )
    disable_cache: bool = option(
        BOOLEAN, False, "turns off both caches and the tiers", legacy=_UNCHECKED
    )
    image_quality: int = option(
        INTEGER,
        95,
        "JPEG quality; WebP and AVIF qualities are mapped from it (see [Formats](#formats))",
        minimum=1,
        maximum=100,
        shapes_output=True,
        legacy=_TYPED,
    )
    keep_alive: bool = option(BOOLEAN, False, "keep client connections open", legacy=_UNCHECKED)
    max_age: int = option(
        INTEGER,
        0,
        "seconds; when > 0, `Cache-Control: max-age=N` and `Expires`",
        minimum=0,
        legacy=_TYPED,
    )
    max_dimension: int = option(
        INTEGER,
        3000,
        "a size with a side at or above this serves the original unresized "
        "(crop points still apply)",
        minimum=1,
        shapes_output=True,
        legacy=_TYPED,
    )
    max_inflight_requests: int = option(
        INTEGER,
        100,
        "concurrent requests from one worker to the origins",
        minimum=1,
        maximum=10_000,
        legacy=_TYPED,
    )
    max_worker_queue: int = option(
        INTEGER,
        64,
        "misses the front lets wait on one worker; more get 503 with `Retry-After: 1` at once "
        "(a worker also skips resizes the front has given up on)",
        minimum=1,
        maximum=100_000,
    )
    origin_connect_timeout: float = option(SECONDS, 3.0, "seconds to connect to an origin")
    origin_timeout: float = option(SECONDS, 10.0, "seconds for a whole origin request (then 504)")
    max_source_bytes: int = option(
        BYTES,
        50 * MIB,
        "larger originals are refused with 413, from `Content-Length` or while the body streams in",
        minimum=1,
    )
    max_source_pixels: int = option(
        INTEGER,
        50_000_000,
        "images with more pixels are refused with 413 from their header, before decoding",
        minimum=1,
    )
    max_inflight_bytes: int = option(
        BYTES,
        256 * MIB,
        "bytes of originals each worker may have on their way in from the origins or in use by "
        "requests at once (at least `max_source_bytes`); a fetch or request that would pass it "
        "gets 503 and `Retry-After: 1`, so a burst of large originals cannot take a worker's "
        "memory",
        minimum=1,
    )
    max_jpeg_scans: int = option(
        INTEGER,
        64,
        "JPEGs with more scans are refused with 413 before decoding (progressive JPEGs have "
        "about 10; each scan is a pass over every coefficient)",
        minimum=1,
        maximum=100_000,
    )
    max_chunks: int = option(
        INTEGER,
        10_000,
        "originals with more PNG chunks, JPEG marker segments or GIF blocks (extensions and "
        "frames) are refused with 413 before decoding; a 50 MB PNG in 8 KiB IDAT chunks has "
        "6,400 (raise it with `max_frames` for animated GIFs of thousands of frames)",
        minimum=16,
        maximum=100_000_000,
    )
    decode_timeout: float = option(
        SECONDS,
        10.0,
        "seconds a worker may spend decoding, resizing and encoding one original; past it the "
        "request gets 504 (see [Limits](#limits-and-hostile-input))",
    )
    client_timeout: float = option(
        SECONDS,
        10.0,
        "seconds a client may take to send its request head, stay idle on a kept-alive "
        "connection, or take nothing of an original being passed on to it",
    )
    max_client_connections: int = option(
        INTEGER,
        4096,
        "client connections the front holds at once; newcomers beyond it are closed",
        minimum=16,
        maximum=1_000_000,
    )
    auto_format: tuple[str, ...] = option(
        AUTO_FORMAT,
        (),
        "formats offered to clients whose `Accept` names them, in order of preference: "
        "`avif, webp`, `webp`, ...; answers carry `Vary: Accept`",
    )
    webp_quality: int | None = option(
        INTEGER,
        None,
        "WebP quality; unset: mapped from the JPEG quality by `phizer/imaging/qualities.py`",
        minimum=1,
        maximum=100,
        unset="mapped",
        shapes_output=True,
    )
    avif_quality: int | None = option(
        INTEGER,
        None,
        "AVIF quality; unset: mapped from the JPEG quality by `phizer/imaging/qualities.py`",
        minimum=1,
        maximum=100,
        unset="mapped",
        shapes_output=True,
    )
    progressive: bool = option(BOOLEAN, False, "write progressive JPEGs", shapes_output=True)
    keep_icc: bool = option(
        BOOLEAN, True, "keep the original's ICC colour profile", shapes_output=True
    )
    strip_metadata: bool = option(
        BOOLEAN, True, "leave EXIF, XMP and comments out of the output", shapes_output=True
    )
    # The pipeline reads the orientation in ``_orientation(image)``: with
    # ``auto_orient`` false it takes every image as orientation 1 (no
    # transpose, the stored size is the upright size, crop points and
    # constraints apply to the stored pixels), as the 2012 phizer did.
    auto_orient: bool = option(
        BOOLEAN,
        True,
        "turn each image upright by its EXIF orientation before cropping; `false` serves the "
        "stored pixels and reads crop points against them, as the 2012 phizer did (phone "
        "photos may come out sideways)",
        shapes_output=True,
    )
    animated: bool = option(
        BOOLEAN,
        False,
        "serve animations (GIF, WebP, APNG, AVIF) animated instead of as their first frame",
        shapes_output=True,
    )
    max_frames: int = option(
        INTEGER,
        100,
        "most frames of an animation served (the rest are cut)",
        minimum=1,
        maximum=10_000,
        shapes_output=True,
    )
    original_ttl: int = option(
        INTEGER,
        0,
        "seconds an original is trusted; past it the next request asks the origin whether it "
        "changed (a conditional GET) and every size follows: unchanged keeps everything, new "
        "bytes replace it, gone is 404; no finished image, and no `max-age`, outlives it. "
        "`0`: cached until evicted, as in 2012",
        minimum=0,
        maximum=10 * 365 * 86400,
    )
    missing_ttl: int = option(
        INTEGER,
        5,
        "seconds a photo that no origin has is remembered, so a storm of requests for it "
        "costs the origins one; a purge forgets it; `0`: not remembered",
        minimum=0,
        maximum=86400,
    )
    failure_ttl: int = option(
        INTEGER,
        60,
        "seconds an original that could not be rendered (413, 422, 502 from decoding, past "
        "`decode_timeout`) answers the same error for every size and crop without another try; "
        "a purge forgets it; `0`: not remembered",
        minimum=0,
        maximum=86400,
    )
    shutdown_timeout: float = option(
        SECONDS,
        10.0,
        "seconds requests in flight may take to finish on SIGTERM or SIGHUP reload",
    )
    decode_memory_reserve: int = option(
        BYTES,
        32 * MIB,
        "freed decode memory each worker keeps for its next decode instead of handing it "
        "back; `64M` makes cold progressive JPEGs cheaper for more RSS (see docs/operations.md, "
        '"Memory")',
        minimum=2 * MIB,
        maximum=1024 * MIB,
    )
    log_level: int = option(LOG_LEVEL, logging.WARNING, "the front's (and supervisor's) log level")
    log_level_worker: int = option(LOG_LEVEL, logging.WARNING, "the workers' log level")
    debug: bool = option(BOOLEAN, False, "DEBUG logging everywhere", legacy=_UNCHECKED)
    syslog_facility: int | None = option(
        SYSLOG_FACILITY,
        None,
        "e.g. `LOG_LOCAL0`: log to syslog instead of stderr (the 2012 phizer ignored it)",
        unset="none",
        legacy=_UNCHECKED,
    )
    syslog_priority: int = option(
        SYSLOG_PRIORITY,
        logging.ERROR,
        "lowest priority sent to syslog",
        legacy=_UNCHECKED,
    )
    syslog_address: str | tuple[str, int] = option(
        SYSLOG_ADDRESS, "/dev/log", "syslog's Unix socket, or `host:port` for UDP"
    )
    log_format: str = option(
        choice("text", "json", "legacy"),
        "text",
        "`text`; `json` for one JSON object per line; `legacy` for the 2012 phizer's lines "
        "(`WARNING pid=N 404 GET /path (ip) 1.2ms`)",
    )
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = option(
        NETWORKS,
        (),
        "addresses/networks whose `X-Forwarded-For` is believed for the client address",
    )
    admin_allow: tuple[IPv4Network | IPv6Network, ...] = option(
        NETWORKS,
        (ip_network("127.0.0.0/8"), ip_network("::1/128")),
        "networks that may read `/_health`, `/_metrics`, `/_preview` and `/_sizes` and purge",
    )

    @property
    def worker_timeout(self) -> float:
        """Front-to-worker budget: a little above the worst origin fetch."""
        return self.origin_connect_timeout + self.origin_timeout + 5.0


@dataclass(frozen=True)
class CacheTiers:
    """The optional ``[cache]`` section: the tiers below the memory caches."""

    shared: SharedAddress | None = option(  # noqa: RUF009 (a field specifier)
        SHARED,
        None,
        "`redis://host:port/db` (password: `redis://:secret@host:port/db`) or "
        "`memcached://host:port`: a store shared by every front and worker of every host; "
        "anything else stops phizer at startup",
        unset="none",
    )
    shared_ttl: int = option(
        INTEGER,
        86400,
        "seconds an entry lives in the shared store and is trusted on disk; "
        "`0`: until the store evicts it",
        minimum=0,
        maximum=10 * 365 * 86400,
    )
    # A LAN Redis or memcached answers in well under a millisecond, while a
    # miss costs a resize or an origin fetch of tens of milliseconds; past
    # 0.1 s waiting no longer pays.
    shared_timeout: float = option(
        SECONDS,
        0.1,
        "socket timeout of each call to the shared store; past it the request goes on as a miss",
        maximum=10.0,
    )
    disk_cache_dir: str | None = option(
        TEXT,
        None,
        "finished images and originals on local disk, kept across restarts; relative to the "
        "config file, created if missing, must be writable",
        unset="none",
    )
    disk_cache_size: int = option(
        BYTES,
        1024 * MIB,
        "bytes the disk tier may hold (an entry over 1/32 of it is not kept)",
    )
    secret: str | None = option(
        SECRET,
        None,
        "at least 16 characters: every value written to a tier carries a keyed MAC of its "
        "key and bytes, and one that does not verify is a miss, so whoever can write to the "
        "store cannot plant images; the same on every host sharing a store; never shown by "
        "`--check-config` (see [Scale-out](#scale-out))",
        unset="none",
    )


def declared(cls: type) -> Mapping[str, Option]:
    """The declarations of a settings dataclass, in attribute order."""
    found = {}
    for field in dataclasses.fields(cls):
        declaration = field.metadata.get("option")
        if not isinstance(declaration, Option):
            raise TypeError(f"{cls.__name__}.{field.name} is not declared with option()")
        found[field.name] = dataclasses.replace(declaration, name=field.name)
    return MappingProxyType(found)


PROPERTIES = declared(Settings)
CACHE = declared(CacheTiers)
OUTPUT_SETTINGS = tuple(name for name, opt in PROPERTIES.items() if opt.shapes_output)


def output_settings(settings: Settings) -> dict[str, Any]:
    """The settings that change the bytes of an output image, by name."""
    return {name: getattr(settings, name) for name in OUTPUT_SETTINGS}
