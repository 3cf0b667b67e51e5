"""How much freed memory a worker keeps, and when it hands it back.

Workers keep freed decode buffers for the next decode (see
``phizer.linux.tune_allocator``): under load that saves faulting tens of
MB in afresh for every photo (the kernel zeroes each page on its first
touch). ``decode_memory_reserve`` says how much; two rules keep that from
growing RSS: once the worker has been idle for a while, and whenever more
than the reserve has piled up beside the caches.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from phizer.process.linux import release_free_memory
from phizer.web.inflight import InFlight

IDLE_SECONDS = 2.0
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class DecodeMemory:
    """A worker's allocator settings for a ``decode_memory_reserve``."""

    mmap_threshold: int  # larger buffers are mapped on their own, gone when freed
    trim_threshold: int  # free memory at the heap's top beyond this goes back at once
    # Free memory beside the caches that HeapTrim lets be mid-spell: room for
    # the buffers of the next decode, not for a pile of old ones.
    max_kept_free: int


def decode_memory(reserve: int) -> DecodeMemory:
    """Keep ``reserve`` bytes of freed decode memory for the next decode.

    A decode needs its largest buffer (a progressive JPEG's luma
    coefficients) and about as much again (chroma coefficients, the decoded
    image), so buffers up to half the reserve come from the heap, where the
    next decode finds them; larger ones could not be kept beside the rest.
    """
    return DecodeMemory(reserve // 2, reserve, reserve)


def resident_bytes() -> int:
    """This process's RSS."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * _PAGE


class HeapTrim:
    """Releases free heap memory when the worker has been idle for
    ``idle_seconds`` since its last request, or when RSS exceeds what the
    caches hold plus the RSS it started with plus ``max_kept_free``."""

    def __init__(
        self,
        in_flight: InFlight,
        cached: Callable[[], int],
        max_kept_free: int,
        release: Callable[[], None] = release_free_memory,
        rss: Callable[[], int] = resident_bytes,
        idle_seconds: float = IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._in_flight = in_flight
        self._cached = cached
        self._release = release
        self._rss = rss
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._ceiling = rss() + max_kept_free  # plus what the caches hold
        self._released_after = 0  # requests finished at the last release
        self._idle_timer: asyncio.TimerHandle | None = None

    def check(self) -> bool:
        """Release if either rule says so; True when it did."""
        flight = self._in_flight
        if flight.finished == self._released_after:
            return False  # nothing was freed since
        idle = not flight.count and self._clock() - flight.last_finish >= self._idle_seconds
        if not idle and self._rss() <= self._ceiling + self._cached():
            return False
        self._released_after = flight.finished
        self._release()
        return True

    def start(self) -> None:
        """Check after each request, and once more when the worker has been
        idle for ``idle_seconds``: no polling while nothing happens."""
        self._in_flight.on_leave.append(self._request_ended)

    def _request_ended(self) -> None:
        self.check()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        loop = asyncio.get_running_loop()
        self._idle_timer = loop.call_later(self._idle_seconds, self.check)
