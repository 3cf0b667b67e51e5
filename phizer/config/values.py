"""Parsers for single INI values, tolerant of what legacy config files hold.

Legacy files contain Python-isms such as ``25 * 1024 * 1024, # 25MB`` and
``canvas_color = #ffffff # TODO``; every parser here takes the raw string
and returns a typed value or raises ``ValueError`` with a short reason.
Nothing is ever evaluated.
"""

from __future__ import annotations

import logging
import re
from ipaddress import IPv4Network, IPv6Network, ip_network
from logging.handlers import SysLogHandler

from PIL import ImageColor

# A comment starts at " #" or " ;", but not right after "=" (``background = #000``).
_COMMENT = re.compile(r"(?<!=)(?<!=\s)\s+[#;].*$")
_BYTE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
}
_BYTE_SIZE = re.compile(r"^(?P<product>\d+(?:\s*\*\s*\d+)*)\s*(?P<unit>[a-z]*)$", re.IGNORECASE)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}
# syslog priorities as logging thresholds: a record is sent when at or above.
_SYSLOG_PRIORITIES = {
    "emerg": logging.CRITICAL,
    "alert": logging.CRITICAL,
    "crit": logging.CRITICAL,
    "err": logging.ERROR,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "notice": logging.INFO,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}


def strip_comment(raw: str) -> str:
    """Drop a trailing ``# ...``/``; ...`` comment and a stray trailing comma.

    A value that starts with ``#`` (a colour) is kept; only a ``#`` or ``;``
    after white space starts a comment, and a value that is nothing but a
    comment (``# foo``) is empty.
    """
    value = raw.strip()
    if re.match(r"^[#;](\s|$)", value):
        return ""
    value = _COMMENT.sub("", value).strip()
    return value.rstrip(",").strip()


def parse_byte_size(value: str) -> int:
    """``104857600``, ``25 * 1024 * 1024``, ``25MB``, ``25 MiB`` -> bytes.

    K/M/G units are binary (1024-based) whether written KB or KiB: legacy
    files wrote ``25 * 1024 * 1024  # 25MB`` and meant the same thing.
    """
    match = _BYTE_SIZE.match(value.strip())
    if not match:
        raise ValueError("expected a byte size such as 25MB or 25 * 1024 * 1024")
    unit = match["unit"].lower()
    if unit not in _BYTE_UNITS:
        raise ValueError(f"unknown unit {match['unit']!r}")
    total = 1
    for factor in match["product"].split("*"):
        digits = factor.strip()
        if len(digits) > 15:
            raise ValueError("number too large")
        total *= int(digits)
    return total * _BYTE_UNITS[unit]


def parse_non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


MIN_SECRET_LENGTH = 16


def parse_secret(value: str) -> str:
    secret = value.strip()
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"must be at least {MIN_SECRET_LENGTH} characters (e.g. `openssl rand -hex 32`)"
        )
    return secret


def parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected true/false, yes/no, on/off or 1/0")


def parse_int(value: str, minimum: int | None = None, maximum: int | None = None) -> int:
    text = value.strip()
    if not re.fullmatch(r"[+-]?\d{1,15}", text):
        raise ValueError("expected an integer")
    number = int(text)
    if minimum is not None and number < minimum:
        raise ValueError(f"must be at least {minimum}")
    if maximum is not None and number > maximum:
        raise ValueError(f"must be at most {maximum}")
    return number


def parse_seconds(value: str) -> float:
    text = value.strip().lower().removesuffix("s").strip()
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if not 0 < seconds <= 3600:
        raise ValueError("must be between 0 and 3600 seconds")
    return seconds


def parse_port(value: str) -> int:
    return parse_int(value, 1, 65535)


def parse_color(value: str) -> tuple[int, int, int]:
    try:
        rgb = ImageColor.getrgb(value.strip())
    except ValueError:
        raise ValueError("expected a colour such as #ffffff or white") from None
    return rgb[0], rgb[1], rgb[2]


def parse_log_level(value: str) -> int:
    level = _LOG_LEVELS.get(value.strip().lower())
    if level is None:
        names = ", ".join(name.upper() for name in _LOG_LEVELS)
        raise ValueError(f"expected one of {names}")
    return level


def parse_syslog_facility(value: str) -> int | None:
    name = value.strip().lower().removeprefix("log_")
    if name in ("", "none"):
        return None
    facility = SysLogHandler.facility_names.get(name)
    if facility is None:
        raise ValueError("expected a syslog facility such as LOG_LOCAL0 or LOG_DAEMON")
    return facility


def parse_syslog_priority(value: str) -> int:
    name = value.strip().lower().removeprefix("log_")
    level = _SYSLOG_PRIORITIES.get(name)
    if level is None:
        raise ValueError("expected a syslog priority such as LOG_ERR or LOG_INFO")
    return level


def parse_choice(value: str, choices: tuple[str, ...]) -> str:
    name = value.strip().lower()
    if name not in choices:
        raise ValueError(f"expected one of {', '.join(choices)}")
    return name


def parse_networks(value: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """A comma- or space-separated list of addresses or CIDR networks; ``none``: empty."""
    if value.strip().lower() == "none":
        return ()
    networks = []
    for item in re.split(r"[,\s]+", value.strip()):
        if not item:
            continue
        try:
            networks.append(ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network") from None
    return tuple(networks)


def parse_syslog_address(value: str) -> str | tuple[str, int]:
    """A Unix socket path (``/dev/log``) or ``host:port`` for UDP."""
    address = value.strip()
    if address.startswith("/"):
        return address
    host, sep, port = address.rpartition(":")
    if not sep or not host:
        raise ValueError("expected a socket path such as /dev/log or host:port")
    return host.strip("[]"), parse_port(port)


def parse_auto_format(value: str) -> tuple[str, ...]:
    """``avif, webp``: negotiated output formats in order of preference."""
    names = [item.lower() for item in re.split(r"[,\s]+", value.strip()) if item]
    if names in ([], ["none"], ["off"], ["false"]):
        return ()
    formats = []
    for name in names:
        if name not in ("avif", "webp"):
            raise ValueError(f"{name!r}: expected avif and/or webp")
        if name.upper() not in formats:
            formats.append(name.upper())
    return tuple(formats)
