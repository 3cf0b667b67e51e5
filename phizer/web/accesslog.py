"""The access line: one entry per request, the client's address behind
trusted proxies, and the entry's text and JSON renderings.

Pure functions only; ``web`` gathers the values from a finished request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address

# What an address in X-Forwarded-For may be made of: no scope ids
# (``fe80::1%eth0``), whose free text would reach the log.
_ADDRESS_CHARS = re.compile(r"[0-9A-Fa-f:.]+")
# Escaped in a text line: all but visible ASCII, and the quote and the escape character.
_UNSAFE = re.compile(r'[^\x21-\x7e]|["\\]')
# The attribute of a log record that carries its AccessEntry.
RECORD_ATTR = "access_entry"


@dataclass(frozen=True)
class AccessEntry:
    """One request as the front answered it."""

    method: str
    path: str  # the request target as sent (path and query)
    status: int
    bytes: int  # body bytes sent: 0 for HEAD and 304
    total_ms: float
    fetch_ms: float | None
    resize_ms: float | None
    cache: str | None  # hit, miss or coalesced; None before the cache was asked
    worker: int | None  # 1-based; None for hits and errors before routing
    client: str


def render_text(entry: AccessEntry) -> str:
    """One line of space-separated fields; no field can hold a space or a newline."""
    return " ".join(
        (
            escape(entry.method),
            escape(entry.path),
            str(entry.status),
            escape(entry.client),
            f"total={_ms(entry.total_ms)}",
            f"fetch={_ms(entry.fetch_ms)}",
            f"resize={_ms(entry.resize_ms)}",
            f"cache={escape(entry.cache or '-')}",
            f"bytes={entry.bytes}",
            f"worker={'-' if entry.worker is None else entry.worker}",
        )
    )


def render_legacy(entry: AccessEntry) -> str:
    """The 2012 phizer's line (Tornado's): ``404 GET /path (ip) 1.2ms``."""
    return (
        f"{entry.status} {escape(entry.method)} {escape(entry.path)} "
        f"({escape(entry.client)}) {_ms(entry.total_ms)}"
    )


def json_fields(entry: AccessEntry) -> dict[str, Any]:
    """Named fields for a JSON line; a value that does not apply is null."""
    return {
        "method": entry.method,
        "path": wire_text(entry.path),
        "status": entry.status,
        "bytes": entry.bytes,
        "total_ms": _round_ms(entry.total_ms),
        "fetch_ms": _round_ms(entry.fetch_ms),
        "resize_ms": _round_ms(entry.resize_ms),
        "cache": entry.cache,
        "worker": entry.worker,
        "client": entry.client,
    }


def escape(value: str) -> str:
    """Visible ASCII stays; anything else (space, controls, quotes, backslash,
    non-ASCII) becomes a ``\\xNN`` escape, so a hostile URL cannot forge or
    split a log line and an escape cannot be mistaken for text."""
    return _UNSAFE.sub(_escape_char, value)


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def wire_text(value: str) -> str:
    """Tornado reads the request line as latin-1: show UTF-8 bytes as the
    characters they encode when they are valid UTF-8."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def client_address(peer: str, forwarded_for: Iterable[str], trusted: Sequence[Network]) -> str:
    """The client's address: the TCP peer, unless the peer is a trusted proxy.

    Behind trusted proxies, X-Forwarded-For is read from the right: each
    trusted proxy appended the address it received the request from, so the
    first address that is not a trusted proxy is the client. Entries further
    left were written by the client itself and are never believed. An entry
    that is not an IP address stops the walk at the last trusted hop.
    """
    current = parse_address(peer)
    if current is None or not _is_trusted(current, trusted):
        return peer
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
    for hop in reversed(hops):
        if not hop:
            continue
        address = parse_address(hop)
        if address is None:
            break
        current = address
        if not _is_trusted(address, trusted):
            break
    return str(current)


def parse_address(text: str) -> Address | None:
    """An IPv4 or IPv6 address (``[v6]`` accepted); None for anything else."""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not _ADDRESS_CHARS.fullmatch(text):
        return None
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address.version == network.version and address in network for network in trusted)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}ms"


def _round_ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
