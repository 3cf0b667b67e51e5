"""What a tier holds for a finished image: its content type, then its bytes.

Originals are stored as their bytes alone. A record that does not read
back as expected is treated as absent, never served: a finished image
must name a content type phizer writes and its bytes must start as that
format, so whoever can write to a tier cannot have phizer serve HTML.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass

from phizer.imaging.signatures import looks_like

_MAGIC = b"PZR1 "
_MAX_HEAD = 80
_CONTENT_TYPE = re.compile(rb"^[a-z]+/[a-z0-9.+-]{1,64}$")


@dataclass(frozen=True)
class ResultRecord:
    content_type: str
    data: bytes


def pack_result(content_type: str, data: bytes) -> bytes:
    return _MAGIC + content_type.encode("ascii") + b"\n" + data


def unpack_result(value: bytes) -> ResultRecord | None:
    if not value.startswith(_MAGIC):
        return None
    start = len(_MAGIC)
    end = value.find(b"\n", start, start + _MAX_HEAD)
    head = value[start:end]
    if end < 0 or not _CONTENT_TYPE.match(head):
        return None
    content_type, data = head.decode("ascii"), value[end + 1 :]
    if not looks_like(content_type, data):
        return None
    return ResultRecord(content_type, data)


# Every value a tier holds is wrapped: when it was written and until when it
# is fresh (0: until the tier lets it go), so a purge or an expiry is seen
# on every host that reads it.
_ENVELOPE = struct.Struct(">4sdd")
_ENVELOPE_MAGIC = b"PZT1"
# A purge of one photo: every value of its group written before this is stale.
_TOMBSTONE = struct.Struct(">4sd")
_TOMBSTONE_MAGIC = b"PZP1"


@dataclass(frozen=True)
class Envelope:
    written: float  # Unix time
    expires: float  # Unix time; 0: no expiry of its own
    payload: bytes


def wrap(payload: bytes, written: float, expires: float = 0.0) -> bytes:
    return _ENVELOPE.pack(_ENVELOPE_MAGIC, written, expires) + payload


def unwrap(value: bytes) -> Envelope | None:
    if len(value) < _ENVELOPE.size:
        return None
    magic, written, expires = _ENVELOPE.unpack_from(value)
    if magic != _ENVELOPE_MAGIC or not (math.isfinite(written) and math.isfinite(expires)):
        return None
    return Envelope(written, expires, value[_ENVELOPE.size :])


def tombstone(purged: float) -> bytes:
    return _TOMBSTONE.pack(_TOMBSTONE_MAGIC, purged)


def purged_at(value: bytes | None) -> float:
    """When the group was last purged (0: never, or an unreadable record)."""
    if value is None or len(value) != _TOMBSTONE.size:
        return 0.0
    magic, purged = _TOMBSTONE.unpack(value)
    return purged if magic == _TOMBSTONE_MAGIC and math.isfinite(purged) else 0.0
