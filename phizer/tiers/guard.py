"""A tier's failures turn into misses, and a failing tier is left alone for a while.

On an error or a timeout the request goes on as if the tier had missed,
and the tier is bypassed (lookups miss at once, writes are dropped) for
1 s, then 2 s, 4 s ... up to 30 s while it keeps failing. One warning is
logged when an incident starts and one when the tier answers again, both
at WARNING so the pair shows at the default log level.

Write-backs run as tasks of their own, never on a response's path; at
most ``pending_limit`` are in flight per tier, and the rest are dropped
and counted, so a slow tier cannot pile up work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from phizer.tiers.base import Tier, TierPaused
from phizer.tiers.stats import TierMetrics

log = logging.getLogger("phizer.tiers")

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
PENDING_WRITES = 64
GET = "get"
PUT = "put"


class Guard:
    def __init__(
        self,
        tier: Tier,
        metrics: TierMetrics,
        *,
        backstop: float,
        pending_limit: int = PENDING_WRITES,
        first_backoff: float = FIRST_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``backstop``: the longest any call may take, above the tier's own
        (socket) timeouts; it only matters if a tier thread hangs."""
        self.tier = tier
        self.name = tier.name
        self.metrics = metrics
        self.backstop = backstop
        self.pending_limit = pending_limit
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.clock = clock
        self._until = 0.0
        self._backoff = 0.0
        self._incident: str | None = None  # the operation that failed first
        self._incident_since = 0.0
        self._last_failure = float("-inf")
        self._writes: set[asyncio.Task[None]] = set()
        metrics.watch(self)

    # -- state
    def bypassed(self) -> bool:
        return self.clock() < self._until

    def evictions(self) -> int | None:
        count = getattr(self.tier, "evictions", None)
        return count if isinstance(count, int) else None

    @property
    def pending(self) -> int:
        return len(self._writes)

    # -- operations
    async def get(self, key: str) -> bytes | None:
        """The value, or None for a miss, a failure or while bypassed."""
        return (await self.get_many([key]))[0]

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """The values of ``keys`` in one call (each None for a miss, a failure
        or while bypassed); the first key's answer counts as a hit or miss."""
        missing: list[bytes | None] = [None] * len(keys)
        if self.bypassed():
            self.metrics.skipped.inc(self.name)
            return missing
        started = self.clock()
        try:
            async with asyncio.timeout(self.backstop):
                values = await self.tier.get_many(keys)
        except TierPaused:
            self.metrics.skipped.inc(self.name)
            return missing
        except Exception as error:
            self._failed(GET, error)
            return missing
        self._succeeded(GET, started)
        (self.metrics.hits if values[0] is not None else self.metrics.misses).inc(self.name)
        return values

    def put_later(self, key: str, value: bytes) -> None:
        """Write in the background; returns at once."""
        if self.bypassed():
            self.metrics.skipped.inc(self.name)
            return
        limit = self.tier.max_value
        if limit is not None and len(value) > limit:
            self.metrics.dropped.inc(self.name, "too_large")
            return
        if len(self._writes) >= self.pending_limit:
            self.metrics.dropped.inc(self.name, "busy")
            return
        task = asyncio.ensure_future(self._put(key, value))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def put_now(self, key: str, value: bytes) -> None:
        """Write and wait for it (a failure is counted and logged, not raised)."""
        if self.bypassed():
            self.metrics.skipped.inc(self.name)
            return
        await self._put(key, value)

    async def _put(self, key: str, value: bytes) -> None:
        started = self.clock()
        try:
            async with asyncio.timeout(self.backstop):
                await self.tier.put(key, value)
        except TierPaused:
            self.metrics.skipped.inc(self.name)
            return
        except Exception as error:
            self._failed(PUT, error)
            return
        self._succeeded(PUT, started)
        self.metrics.writes.inc(self.name)

    async def close(self, timeout: float) -> None:
        """Let pending writes finish for up to ``timeout`` seconds, cancel
        the rest, and release the tier's threads and connections."""
        if self._writes:
            _, late = await asyncio.wait(set(self._writes), timeout=timeout)
            for task in late:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*late, return_exceptions=True)
        self.tier.close()

    # -- incidents
    def _failed(self, operation: str, error: Exception) -> None:
        self.metrics.errors.inc(self.name)
        now = self.clock()
        self._last_failure = now
        if self._incident is None:
            self._incident = operation
            self._incident_since = now
            self._backoff = self.first_backoff
            log.warning(
                "%s failed (%s: %s); bypassing it for %gs, then retrying with back-off",
                self.tier.description,
                operation,
                describe(error),
                self._backoff,
            )
        elif now < self._until:
            return  # calls already under way when it failed: the same failure
        else:
            self._backoff = min(self._backoff * 2, self.max_backoff)
        self._until = now + self._backoff
        self.tier.hold(self._until)

    def _succeeded(self, operation: str, started: float) -> None:
        # Only a call started after the last failure shows the tier is back,
        # and only one like the call that failed: a full disk still reads.
        if self._incident != operation or started < self._last_failure:
            return
        down_for = self.clock() - self._incident_since
        log.warning("%s answers again after %.1fs", self.tier.description, down_for)
        self._incident = None
        self._backoff = 0.0


def describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
