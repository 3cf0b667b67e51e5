"""An LRU of encoded bytes bounded by the bytes it holds."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

# Charged per entry on top of its payload: key, node and object headers.
ENTRY_OVERHEAD = 200


class Sized(Protocol):
    @property
    def nbytes(self) -> int: ...


V = TypeVar("V", bound=Sized)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


class ByteLRU(Generic[V]):
    """Least-recently-used map whose total ``nbytes`` never exceeds ``capacity``.

    An entry bigger than the whole cache is not stored (it would evict
    everything for nothing); a capacity of 0 disables the cache.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = 0
        self.stats = CacheStats()
        self._entries: OrderedDict[str, V] = OrderedDict()
        # What each entry cost when stored: a value may grow while cached
        # (a decoded original gains levels); putting it again recounts it.
        self._costs: dict[str, int] = {}
        # Told of every key that leaves (evicted, replaced or discarded).
        self.on_drop: Callable[[str], None] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        """Whether ``key`` is held; unlike ``get``, neither counted nor refreshed."""
        return key in self._entries

    def peek(self, key: str) -> V | None:
        """The value, neither counted nor refreshed."""
        return self._entries.get(key)

    def get(self, key: str) -> V | None:
        value = self._entries.get(key)
        if value is None:
            self.stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return value

    def put(self, key: str, value: V) -> bool:
        """Store ``value``; returns False when it is too big to keep."""
        cost = _cost(key, value)
        if cost > self.capacity:
            return False
        self.discard(key)
        while self.size + cost > self.capacity:
            old_key, _ = self._entries.popitem(last=False)
            self.size -= self._costs.pop(old_key)
            self.stats.evictions += 1
            if self.on_drop is not None:
                self.on_drop(old_key)
        self._entries[key] = value
        self._costs[key] = cost
        self.size += cost
        return True

    def cost(self, key: str) -> int:
        """What ``key``'s entry cost when it was stored (0 when absent)."""
        return self._costs.get(key, 0)

    @staticmethod
    def cost_of(key: str, value: V) -> int:
        return _cost(key, value)

    def discard(self, key: str) -> None:
        if self._entries.pop(key, None) is not None:
            self.size -= self._costs.pop(key)
            if self.on_drop is not None:
                self.on_drop(key)


def _cost(key: str, value: Sized) -> int:
    return value.nbytes + len(key) + ENTRY_OVERHEAD
