"""The shared tier on memcached (pymemcache, in the tier's threads).

memcached refuses items above its item size limit (``-I``, 1 MiB by
default); larger values are not sent at all, so they are neither stored
nor counted as a failure of the store.
"""

from __future__ import annotations

import time
from typing import Any

from pymemcache.client.base import PooledClient
from pymemcache.client.retrying import RetryingClient
from pymemcache.exceptions import MemcacheUnexpectedCloseError

from phizer.config.addresses import SharedAddress
from phizer.tiers.base import NetworkStore

# The default item limit less room for the key and the item header.
MAX_VALUE = 1024 * 1024 - 1024
# memcached reads an expiry above 30 days as a Unix time.
_RELATIVE_LIMIT = 30 * 24 * 3600


class MemcachedTier(NetworkStore):
    def __init__(
        self, address: SharedAddress, ttl: int, timeout: float, max_value: int = MAX_VALUE
    ) -> None:
        self.max_value = max_value
        self._ttl = ttl
        super().__init__("phizer-memcached", address, timeout)

    def _connect(self, address: SharedAddress, connections: int, timeout: float) -> RetryingClient:
        return _client(address, connections, timeout)

    def _set(self, key: str, value: bytes) -> None:
        expire = self._ttl
        if expire > _RELATIVE_LIMIT:
            expire = int(time.time()) + expire
        if not self._writer.set(key, value, expire=expire):
            raise RuntimeError("memcached did not store the item")

    def _get_many(self, keys: list[str]) -> list[Any]:
        found = self._reader.get_many(keys)
        return [found.get(key) for key in keys]

    def close(self) -> None:
        super().close()
        for client in (self._reader, self._writer):
            client.close()


# What a pooled connection that memcached closed (a restart) fails with,
# at once; each such failure drops that connection from the pool.
_STALE = (MemcacheUnexpectedCloseError, BrokenPipeError, ConnectionResetError)


def _client(address: SharedAddress, connections: int, timeout: float) -> RetryingClient:
    pooled = PooledClient(
        (address.host, address.port),
        connect_timeout=timeout,
        timeout=timeout,
        no_delay=True,
        max_pool_size=connections,
        # Wait for the server's answer, so a refused write is an error.
        default_noreply=False,
    )
    # Once memcached is back, every pooled connection is stale; retrying
    # past them all (never on a timeout) keeps one restart one incident.
    return RetryingClient(pooled, attempts=connections + 1, retry_for=_STALE)
