"""What every tier offers, and the threads the blocking ones run in.

Tier clients are blocking (redis-py, pymemcache, file IO) and run in
small pools of threads owned by the tier, so the event loop never waits
on them. Their time limits are socket timeouts inside those threads: a
worker's event loop that is busy resizing for a while cannot make a
healthy tier look slow, as a timer on the loop would. Lookups and
write-backs have pools of their own, so slow background writes never
hold up a lookup a request is waiting for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from phizer.config.addresses import SharedAddress

T = TypeVar("T")


class Tier(Protocol):
    """A byte store. ``get`` returns None for a miss and raises on a failure."""

    # The metrics label ("shared" or "disk") and what logs call the tier.
    name: str
    description: str
    # Larger values are not stored (memcached's item limit), None: any size.
    max_value: int | None

    async def get(self, key: str) -> bytes | None: ...

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """The values of ``keys`` in one call (one round trip)."""
        ...

    async def put(self, key: str, value: bytes) -> None: ...

    def hold(self, until: float) -> None:
        """Calls still queued are dropped until monotonic time ``until``."""

    def close(self) -> None: ...


class TierPaused(Exception):
    """A call that waited in the queue while the tier was being bypassed."""


class Offloaded:
    """The threads that run one tier's blocking calls: one pool for lookups,
    one for writes."""

    def __init__(self, thread_name: str, read_threads: int, write_threads: int) -> None:
        self._reads = ThreadPoolExecutor(read_threads, thread_name_prefix=f"{thread_name}-r")
        self._writes = ThreadPoolExecutor(write_threads, thread_name_prefix=f"{thread_name}-w")
        self._hold_until = 0.0

    def hold(self, until: float) -> None:
        # A float assignment is atomic; the threads only read it.
        self._hold_until = until

    async def call(self, function: Callable[..., T], *args: object, write: bool = False) -> T:
        pool = self._writes if write else self._reads
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, self._run, function, args)

    def _run(self, function: Callable[..., T], args: tuple[object, ...]) -> T:
        # Without this, calls queued behind a stalled store would each wait
        # out their own timeout after the guard had already given up on it.
        if time.monotonic() < self._hold_until:
            raise TierPaused()
        return function(*args)

    def close(self) -> None:
        for pool in (self._reads, self._writes):
            pool.shutdown(wait=False, cancel_futures=True)


# Enough for a busy front; each thread holds at most one connection.
NETWORK_READ_THREADS = 8
NETWORK_WRITE_THREADS = 4


def write_timeout(timeout: float) -> float:
    """Writes run in the background and may carry a large original in one
    send, which must fit in the socket timeout: give them room."""
    return max(1.0, 10 * timeout)


class NetworkStore(Offloaded):
    """A shared store reached over the network: lookups through one client
    (short timeout), write-backs through another (a longer one)."""

    name = "shared"
    max_value: int | None = None

    def __init__(self, thread_name: str, address: SharedAddress, timeout: float) -> None:
        super().__init__(thread_name, NETWORK_READ_THREADS, NETWORK_WRITE_THREADS)
        self.description = address.describe()
        self._reader = self._connect(address, NETWORK_READ_THREADS, timeout)
        self._writer = self._connect(address, NETWORK_WRITE_THREADS, write_timeout(timeout))

    def _connect(self, address: SharedAddress, connections: int, timeout: float) -> Any:
        raise NotImplementedError

    def _set(self, key: str, value: bytes) -> None:
        raise NotImplementedError

    def _get_many(self, keys: list[str]) -> list[Any]:
        raise NotImplementedError

    async def get(self, key: str) -> bytes | None:
        value = await self.call(self._reader.get, key)
        return bytes(value) if value is not None else None

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        values = await self.call(self._get_many, keys)
        return [bytes(value) if value is not None else None for value in values]

    async def put(self, key: str, value: bytes) -> None:
        await self.call(self._set, key, value, write=True)
