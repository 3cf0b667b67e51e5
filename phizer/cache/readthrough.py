"""One read-through cache: memory LRU, single flight, slower tiers, the source.

The front keeps finished images this way and each worker its originals:
a memory hit answers at once; concurrent misses for one key share one
load; a load asks the tiers (disk, shared store) before the source, and
what the source gave is written back to the tiers after the answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from phizer.cache.lru import ByteLRU, Sized
from phizer.cache.singleflight import SingleFlight
from phizer.tiers.chain import TierChain

V = TypeVar("V", bound=Sized)

# How a value was had, as the access log says it.
HIT = "hit"
MISS = "miss"
COALESCED = "coalesced"


@dataclass(frozen=True)
class Codec(Generic[V]):
    """How a value is written to the tiers and read back; ``unpack`` returns
    None for a record that is not usable here (damaged, over a limit)."""

    pack: Callable[[V], bytes]
    unpack: Callable[[bytes], V | None]


class ReadThrough(Generic[V]):
    def __init__(self, memory: ByteLRU[V], tiers: TierChain, codec: Codec[V]) -> None:
        self.memory = memory
        self.tiers = tiers
        self.codec = codec
        self.flights: SingleFlight[tuple[V, str]] = SingleFlight()

    async def get(
        self, key: str, source: Callable[[], Awaitable[V]], tier_key: Callable[[], str]
    ) -> tuple[V, str]:
        """The value and how it was had: ``hit``, a tier's name, ``miss``
        (from the source) or ``coalesced`` (waited on another request's load).
        ``tier_key`` names the value in the tiers (asked only on a miss)."""
        cached = self.memory.get(key)
        if cached is not None:
            return cached, HIT
        (value, how), joined = await self.flights.run(
            key, lambda: self._load(key, source, tier_key)
        )
        return value, COALESCED if joined else how

    async def _load(
        self, key: str, source: Callable[[], Awaitable[V]], tier_key: Callable[[], str]
    ) -> tuple[V, str]:
        name = tier_key() if self.tiers else ""
        found = await self.tiers.get(name, self.codec.unpack) if self.tiers else None
        if found is not None:
            self.memory.put(key, found.value)
            return found.value, found.tier
        value = await source()
        self.memory.put(key, value)
        if self.tiers:
            self.tiers.put_later(name, self.codec.pack(value))
        return value, MISS

    async def close(self, timeout: float) -> None:
        """Finish pending write-backs (at most ``timeout`` s), release the tiers."""
        await self.tiers.close(timeout)
