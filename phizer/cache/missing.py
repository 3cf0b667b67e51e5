"""Photos no origin has, remembered for a few seconds (``missing_ttl``)."""

from __future__ import annotations

from collections import OrderedDict

# Enough for a storm of distinct missing names; the oldest go first.
MAX_ENTRIES = 100_000


class Missing:
    """Path -> until when (monotonic) it counts as missing; bounded."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._until: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._until)

    def get(self, path: str, default: float) -> float:
        return self._until.get(path, default)

    def put(self, path: str, until: float) -> None:
        self._until.pop(path, None)
        self._until[path] = until
        while len(self._until) > self.max_entries:
            self._until.popitem(last=False)

    def discard(self, path: str) -> None:
        self._until.pop(path, None)
