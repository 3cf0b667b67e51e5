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
OVER_BUDGET = "too many large originals in flight; try again"


@dataclass(frozen=True)
class Validators:
    """What tells one version of an original from another: the HTTP
    ``ETag`` and ``Last-Modified`` (a directory's file: its mtime and size)."""

    etag: str | None = None
    last_modified: str | None = None

    def __bool__(self) -> bool:
        return self.etag is not None or self.last_modified is not None

    def conditional_headers(self) -> dict[str, str]:
        """The headers of a conditional GET for the version they describe:
        the ETag when there is one, else the date. Not both: a store that
        weighs both may answer 304 for an object replaced within the second
        its date names, though the ETag differs."""
        if self.etag is not None:
            return {"If-None-Match": self.etag}
        if self.last_modified is not None:
            return {"If-Modified-Since": self.last_modified}
        return {}

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
    """The bytes of originals one process has on their way in or in use,
    bounded: past ``budget`` a fetch is stopped, or a request refused, with
    503 (``Retry-After``) rather than let a burst of large originals take
    the process's memory.

    A fetch counts its bytes as they arrive (``take``/``give_back``); an
    original then counts while requests use it (``hold``/``let_go``),
    once however many do: a request waiting for its render keeps it alive
    even when the cache has let it go.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.held = 0
        self._holds: dict[str, tuple[int, int]] = {}  # key -> (bytes, holders)

    def take(self, count: int) -> bool:
        """Count ``count`` more bytes; False (nothing counted) past the budget."""
        if self.held + count > self.budget:
            return False
        self.held += count
        return True

    def give_back(self, count: int) -> None:
        self.held = max(0, self.held - count)

    def hold(self, key: str, count: int) -> bool:
        """One more holder of ``key``'s ``count`` bytes; False past the budget."""
        held = self._holds.get(key)
        if held is not None:
            self._holds[key] = (held[0], held[1] + 1)
            return True
        if not self.take(count):
            return False
        self._holds[key] = (count, 1)
        return True

    def let_go(self, key: str) -> None:
        """One holder of ``key`` less; its bytes stop counting with the last."""
        count, holders = self._holds[key]
        if holders > 1:
            self._holds[key] = (count, holders - 1)
        else:
            del self._holds[key]
            self.give_back(count)


@dataclass(frozen=True)
class FetchLimits:
    """The limits every network fetch of an origin keeps."""

    connect_timeout: float
    timeout: float
    max_bytes: int = DEFAULT_MAX_BYTES
    in_flight: InFlightBytes | None = None  # shared by the process's fetches

    def too_large(self) -> str:
        return f"source image is larger than {self.max_bytes} bytes"
