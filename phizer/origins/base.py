"""What every origin is: a name and ``fetch(path) -> bytes``.

``fetch`` returns the original's bytes or raises ``NotFound`` (this origin
does not have it), ``OriginError`` (502: it failed), ``OriginTimeout``
(504) or ``SourceTooLarge`` (413).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

DEFAULT_MAX_BYTES = 50 * 1024 * 1024


class Origin(Protocol):
    name: str

    async def fetch(self, path: str) -> bytes: ...


@dataclass(frozen=True)
class FetchLimits:
    """The limits every network fetch of an origin keeps."""

    connect_timeout: float
    timeout: float
    max_bytes: int = DEFAULT_MAX_BYTES

    def too_large(self) -> str:
        return f"source image is larger than {self.max_bytes} bytes"
