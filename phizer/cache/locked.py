"""A ``ByteLRU`` shared by threads: every operation under one lock."""

from __future__ import annotations

import threading

from phizer.cache.lru import ByteLRU, V


class LockedLRU(ByteLRU[V]):
    """The same LRU for values used by render threads (``phizer.web.renderer``)
    and the loop at once."""

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self._lock = threading.RLock()  # put() calls discard()

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return super().__contains__(key)

    def get(self, key: str) -> V | None:
        with self._lock:
            return super().get(key)

    def put(self, key: str, value: V) -> bool:
        with self._lock:
            return super().put(key, value)

    def cost(self, key: str) -> int:
        with self._lock:
            return super().cost(key)

    def discard(self, key: str) -> None:
        with self._lock:
            super().discard(key)
