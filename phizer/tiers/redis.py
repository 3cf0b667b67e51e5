"""The shared tier on Redis (redis-py's blocking client, in the tier's threads)."""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from phizer.config.addresses import SharedAddress
from phizer.tiers.base import NetworkStore


class RedisTier(NetworkStore):
    def __init__(self, address: SharedAddress, ttl: int, timeout: float) -> None:
        self._ttl = ttl or None  # 0: kept until Redis evicts it
        super().__init__("phizer-redis", address, timeout)

    def _connect(self, address: SharedAddress, connections: int, timeout: float) -> redis.Redis:
        return _client(address, connections, timeout)

    def _set(self, key: str, value: bytes) -> None:
        self._writer.set(key, value, ex=self._ttl)

    def _get_many(self, keys: list[str]) -> list[Any]:
        return list(self._reader.mget(keys))

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
