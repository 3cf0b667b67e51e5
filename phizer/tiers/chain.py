"""The tiers one process asks, in order, and how they are built from ``[cache]``.

Order: the disk first, then the shared store. The disk is local (a page
cache hit costs microseconds, a miss one failed ``open``) and keeps the
shared store's load down; the shared store costs a network round trip
and is what lets another host's work be reused. A value found in the
shared store is copied to the disk in the background.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from phizer.config.addresses import REDIS
from phizer.config.loader import Config
from phizer.tiers.base import Tier
from phizer.tiers.bus import PurgeBus
from phizer.tiers.disk import DiskTier
from phizer.tiers.guard import Guard
from phizer.tiers.records import Envelope, purged_at, tombstone, unwrap, wrap
from phizer.tiers.seal import Seal, seal_for
from phizer.tiers.stats import TierMetrics

T = TypeVar("T")

# The longest a disk call may take before the guard gives up on it (a hung
# network filesystem). Backstops are timers on the event loop, which a
# worker's resize can hold for a while, so they are long; the socket
# timeouts in the tier's threads are what bound a slow store.
DISK_BACKSTOP = 10.0


def shared_backstop(timeout: float) -> float:
    """Far above the socket timeouts: only a hung client thread reaches it."""
    return max(10.0, 50 * timeout)


@dataclass(frozen=True)
class Found(Generic[T]):
    value: T
    tier: str  # the name of the tier that had it


class TierChain:
    def __init__(
        self,
        guards: Sequence[Guard] = (),
        clock: Callable[[], float] = time.time,
        seal: Seal | None = None,
    ) -> None:
        """``seal``: with ``[cache] secret``, what every value is written
        with and must verify against when read (``phizer.tiers.seal``)."""
        self.guards = tuple(guards)
        self.clock = clock
        self.seal = seal

    def __bool__(self) -> bool:
        return bool(self.guards)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(guard.name for guard in self.guards)

    async def get(
        self, key: str, read: Callable[[Envelope], T | None], group: str
    ) -> Found[T] | None:
        """The first value ``read`` makes something of (a value it returns
        None for counts as absent, and as rejected); earlier tiers get a
        copy. A value written before its ``group`` was last purged, or past
        its expiry, is absent; one that is damaged or fails the seal is
        absent and counted as rejected."""
        for index, guard in enumerate(self.guards):
            raw, purge = await guard.get_many([key, group])
            if raw is None:
                continue
            envelope = unwrap(self._open(key, raw))
            if envelope is None:
                guard.metrics.rejected.inc(guard.name)
                continue
            if envelope.written <= purged_at(self._open(group, purge)):
                continue
            if envelope.expires and envelope.expires <= self.clock():
                continue
            value = read(envelope)
            if value is None:
                guard.metrics.rejected.inc(guard.name)
                continue
            for earlier in self.guards[:index]:
                earlier.put_later(key, raw)
            return Found(value, guard.name)
        return None

    def put_later(self, key: str, payload: bytes, expires: float = 0.0) -> None:
        value = self._close(key, wrap(payload, self.clock(), expires))
        for guard in self.guards:
            guard.put_later(key, value)

    def _close(self, key: str, value: bytes) -> bytes:
        return self.seal.close(key, value) if self.seal is not None else value

    def _open(self, key: str, value: bytes | None) -> bytes:
        """The value as written, or b"" (unreadable) when it fails the seal."""
        if value is None:
            return b""
        if self.seal is None:
            return value
        return self.seal.open(key, value) or b""

    async def purge(self, group: str) -> None:
        """Mark every value of ``group`` written until now as stale in every
        tier; returns once they have it (or failed), so that no host reads
        an old value after hearing of the purge."""
        value = self._close(group, tombstone(self.clock()))
        await asyncio.gather(*(guard.put_now(group, value) for guard in self.guards))

    async def close(self, timeout: float) -> None:
        await asyncio.gather(*(guard.close(timeout) for guard in self.guards))


def open_tiers(config: Config, kind: str, metrics: TierMetrics) -> TierChain:
    """The tiers of ``[cache]`` for one process; ``kind`` is the disk
    tier's subdirectory (``disk.RESULTS`` or ``disk.ORIGINALS``)."""
    cache = config.cache
    if config.settings.disable_cache:
        return TierChain()
    guards = []
    if cache.disk_cache_dir is not None and cache.disk_cache_size > 0:
        disk = DiskTier(cache.disk_cache_dir, kind, cache.disk_cache_size, cache.shared_ttl)
        guards.append(Guard(disk, metrics, backstop=DISK_BACKSTOP))
    if cache.shared is not None:
        guards.append(
            Guard(shared_tier(config), metrics, backstop=shared_backstop(cache.shared_timeout))
        )
    return TierChain(guards, seal=seal_for(cache.secret))


def purge_bus(config: Config) -> PurgeBus | None:
    """With a shared Redis, the channel that tells every host of a purge."""
    address = config.cache.shared
    if config.settings.disable_cache or address is None or address.kind != REDIS:
        return None
    from phizer.tiers.bus import PurgeBus
    from phizer.tiers.keys import origins_fingerprint

    channel = "phizer:purge:" + origins_fingerprint(config.master, config.slaves)
    return PurgeBus(address, channel, config.cache.shared_timeout)


def shared_tier(config: Config) -> Tier:
    cache = config.cache
    address = cache.shared
    assert address is not None
    # Imported here: a host without a shared tier never loads either client.
    if address.kind == REDIS:
        from phizer.tiers.redis import RedisTier

        return RedisTier(address, cache.shared_ttl, cache.shared_timeout)
    from phizer.tiers.memcached import MemcachedTier

    return MemcachedTier(address, cache.shared_ttl, cache.shared_timeout)
