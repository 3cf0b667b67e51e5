"""The shared tier on Redis (redis-py's blocking client, in the tier's threads)."""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from phizer.tiers.address import SharedAddress
from phizer.tiers.base import Offloaded

# Enough for a busy front; each thread holds at most one connection.
READ_THREADS = 8
WRITE_THREADS = 4


def write_timeout(timeout: float) -> float:
    """Writes run in the background and may carry a large original in one
    send, which must fit in the socket timeout: give them room."""
    return max(1.0, 10 * timeout)


class RedisTier(Offloaded):
    name = "shared"
    max_value: int | None = None

    def __init__(self, address: SharedAddress, ttl: int, timeout: float) -> None:
        super().__init__("phizer-redis", READ_THREADS, WRITE_THREADS)
        self.description = address.describe()
        self._ttl = ttl or None  # 0: kept until Redis evicts it
        self._reader = _client(address, READ_THREADS, timeout)
        self._writer = _client(address, WRITE_THREADS, write_timeout(timeout))

    async def get(self, key: str) -> bytes | None:
        value = await self.call(self._reader.get, key)
        return bytes(value) if value is not None else None

    async def put(self, key: str, value: bytes) -> None:
        await self.call(self._set, key, value, write=True)

    def _set(self, key: str, value: bytes) -> None:
        self._writer.set(key, value, ex=self._ttl)

    def close(self) -> None:
        super().close()
        for client in (self._reader, self._writer):
            client.connection_pool.disconnect()


def _client(address: SharedAddress, connections: int, timeout: float) -> redis.Redis:
    pool = redis.BlockingConnectionPool(
        host=address.host,
        port=address.port,
        db=address.db,
        password=address.password,
        max_connections=connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # A retry would multiply the timeout; the guard decides what
        # happens after a failure.
        retry=Retry(NoBackoff(), 0),
    )
    return redis.Redis(connection_pool=pool)
