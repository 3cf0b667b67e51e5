"""One read-through cache: memory LRU, single flight, slower tiers, the source.

The front keeps finished images this way and each worker its originals:
a memory hit answers at once; concurrent misses for one key share one
load; a load asks the tiers (disk, shared store) before the source, and
what the source gave is written back to the tiers after the answer.

Every key belongs to a *group* (the photo it was made from): a purge drops
the group's entries from memory, keeps loads already under way from
storing what they read before it, and leaves a tombstone in the tiers so
that no host serves what was written there before it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from phizer.cache.lru import ByteLRU
from phizer.cache.singleflight import SingleFlight
from phizer.tiers.chain import TierChain
from phizer.tiers.records import Envelope


class Cached(Protocol):
    @property
    def nbytes(self) -> int: ...

    @property
    def expires(self) -> float:
        """Unix time after which the value is stale; 0: never."""
        ...


V = TypeVar("V", bound=Cached)

# How a value was had, as the access log says it.
HIT = "hit"
MISS = "miss"
COALESCED = "coalesced"


@dataclass(frozen=True)
class Codec(Generic[V]):
    """How a value is written to the tiers and read back; ``unpack`` returns
    None for a record that is not usable here (damaged, over a limit)."""

    pack: Callable[[V], bytes]
    unpack: Callable[[Envelope], V | None]


@dataclass(frozen=True)
class Names:
    """Where a value lives: its memory key, its tier key and its group's."""

    key: str
    group: str
    tier_key: Callable[[], str]  # computed only when the tiers are asked
    tier_group: Callable[[], str]


class ReadThrough(Generic[V]):
    def __init__(
        self,
        memory: ByteLRU[V],
        tiers: TierChain,
        codec: Codec[V],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.memory = memory
        self.tiers = tiers
        self.codec = codec
        self.clock = clock
        self.flights: SingleFlight[tuple[V, str]] = SingleFlight()
        # The memory keys of each group, for purges.
        self._groups: dict[str, set[str]] = {}
        self._key_group: dict[str, str] = {}
        memory.on_drop = self._forget
        # Purges per group while loads were under way (see loading()).
        self._purges: dict[str, int] = {}
        self._loads = 0

    async def get(self, names: Names, source: Callable[[], Awaitable[V]]) -> tuple[V, str]:
        """The value and how it was had: ``hit``, a tier's name, ``miss``
        (from the source) or ``coalesced`` (waited on another request's load).
        A value past its expiry is loaded again."""
        cached = self._fresh(names.key)
        if cached is not None:
            return cached, HIT
        (value, how), joined = await self.flights.run(names.key, lambda: self._load(names, source))
        return value, COALESCED if joined else how

    async def cached(self, names: Names) -> tuple[V, str] | None:
        """The value and where it was (``hit`` or a tier's name), without
        asking the source: for values the caller loads itself."""
        value = self._fresh(names.key)
        if value is not None:
            return value, HIT
        with self.loading(names.group) as unpurged:
            found = await self._from_tiers(names)
            if found is not None and unpurged():
                self._remember(names, found[0])
        return found

    @contextlib.contextmanager
    def loading(self, group: str) -> Iterator[Callable[[], bool]]:
        """A load, in ``get`` or by a caller: gives a check that no purge of
        ``group`` happened since it began (what it read then must not be kept)."""
        self._loads += 1
        purges = self._purges.get(group, 0)
        try:
            yield lambda: self._purges.get(group, 0) == purges
        finally:
            self._loads -= 1

    def _fresh(self, key: str) -> V | None:
        cached = self.memory.get(key)
        if cached is not None and cached.expires and cached.expires <= self.clock():
            self.memory.discard(key)
            return None
        return cached

    def peek(self, key: str) -> V | None:
        """The value held in memory, fresh or not, without counting a lookup."""
        return self.memory.peek(key)

    def put(self, names: Names, value: V) -> None:
        """Keep ``value`` in memory and write it back to the tiers."""
        self._remember(names, value)
        if self.tiers:
            self.tiers.put_later(names.tier_key(), self.codec.pack(value), value.expires)

    async def purge(self, group: str, tier_group: Callable[[], str]) -> int:
        """Drop every entry of ``group`` from memory (returns how many) and
        mark the group's tier entries stale."""
        if not self._loads:
            self._purges.clear()  # no load can still be holding an old count
        self._purges[group] = self._purges.get(group, 0) + 1
        keys = list(self._groups.get(group, ()))
        for key in keys:
            self.memory.discard(key)
        if self.tiers:
            await self.tiers.purge(tier_group())
        return len(keys)

    async def _load(self, names: Names, source: Callable[[], Awaitable[V]]) -> tuple[V, str]:
        with self.loading(names.group) as unpurged:
            found = await self._from_tiers(names)
            value, how = found if found is not None else (await source(), MISS)
            if not unpurged():
                return value, how  # purged meanwhile: answer, but keep nothing
        if found is not None:
            self._remember(names, value)
        else:
            self.put(names, value)
        return value, how

    async def _from_tiers(self, names: Names) -> tuple[V, str] | None:
        """The value and the name of the tier that had it."""
        if not self.tiers:
            return None
        found = await self.tiers.get(names.tier_key(), self.codec.unpack, names.tier_group())
        return None if found is None else (found.value, found.tier)

    def _remember(self, names: Names, value: V) -> None:
        if value.expires and value.expires <= self.clock():
            return  # already stale: kept nowhere
        if self.memory.put(names.key, value):
            self._groups.setdefault(names.group, set()).add(names.key)
            self._key_group[names.key] = names.group

    def _forget(self, key: str) -> None:
        group = self._key_group.pop(key, None)
        if group is None:
            return
        keys = self._groups.get(group)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._groups[group]

    async def close(self, timeout: float) -> None:
        """Finish pending write-backs (at most ``timeout`` s), release the tiers."""
        await self.tiers.close(timeout)
