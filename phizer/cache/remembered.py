"""Answers remembered for a few seconds: photos no origin has
(``missing_ttl``) and originals that failed (``failure_ttl``)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

# Enough for a storm of distinct names; the oldest go first.
MAX_ENTRIES = 100_000

T = TypeVar("T")


class Remembered(Generic[T]):
    """Path -> a value until a (monotonic) time; bounded, the oldest dropped first."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, T]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, path: str, now: float) -> T | None:
        """The value remembered for ``path``, while it lasts."""
        entry = self._entries.get(path)
        if entry is None:
            return None
        until, value = entry
        if until <= now:
            del self._entries[path]
            return None
        return value

    def put(self, path: str, until: float, value: T) -> None:
        self._entries.pop(path, None)
        self._entries[path] = (until, value)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def discard(self, path: str) -> None:
        self._entries.pop(path, None)
