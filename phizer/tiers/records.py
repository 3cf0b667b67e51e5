"""What a tier holds for a finished image: its content type, then its bytes.

Originals are stored as their bytes alone. A record that does not read
back as expected is treated as absent, never served.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
    return ResultRecord(head.decode("ascii"), value[end + 1 :])
