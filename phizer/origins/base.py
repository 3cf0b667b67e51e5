"""What every origin is: a name and ``fetch(path, validators) -> Fetched``.

``fetch`` returns the original's bytes with its validators (or, given the
validators of a copy, that the copy is still current), or raises
``NotFound`` (this origin does not have it), ``OriginError`` (502: it
failed), ``OriginTimeout`` (504) or ``SourceTooLarge`` (413).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

DEFAULT_MAX_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class Validators:
    """What tells one version of an original from another: the HTTP
    ``ETag`` and ``Last-Modified`` (a directory's file: its mtime and size)."""

    etag: str | None = None
    last_modified: str | None = None

    def __bool__(self) -> bool:
        return self.etag is not None or self.last_modified is not None

    def conditional_headers(self) -> dict[str, str]:
        """The headers of a conditional GET for the version they describe."""
        headers = {}
        if self.etag is not None:
            headers["If-None-Match"] = self.etag
        if self.last_modified is not None:
            headers["If-Modified-Since"] = self.last_modified
        return headers

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Validators:
        return cls(_header(headers.get("ETag")), _header(headers.get("Last-Modified")))


def _header(value: str | None) -> str | None:
    # An origin's header goes back to it in a request: printable ASCII only.
    if value is None or not value.isascii() or not value.isprintable() or len(value) > 256:
        return None
    return value


@dataclass(frozen=True)
class Fetched:
    """An origin's answer: the bytes, or None when the copy asked about is current."""

    data: bytes | None
    validators: Validators = Validators()


class Origin(Protocol):
    name: str

    async def fetch(self, path: str, validators: Validators | None = None) -> Fetched: ...


class InFlightBytes:
    """The bytes of originals being fetched by one process, bounded: past
    ``budget`` a fetch is stopped with 503 (``Retry-After``) rather than let
    a burst of large originals take the process's memory."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.held = 0

    def take(self, count: int) -> bool:
        """Count ``count`` more bytes; False (nothing counted) past the budget."""
        if self.held + count > self.budget:
            return False
        self.held += count
        return True

    def give_back(self, count: int) -> None:
        self.held = max(0, self.held - count)


@dataclass(frozen=True)
class FetchLimits:
    """The limits every network fetch of an origin keeps."""

    connect_timeout: float
    timeout: float
    max_bytes: int = DEFAULT_MAX_BYTES
    in_flight: InFlightBytes | None = None  # shared by the process's fetches

    def too_large(self) -> str:
        return f"source image is larger than {self.max_bytes} bytes"

    def over_budget(self) -> str:
        return "too many large originals in flight; try again"
