"""A worker hands its freed decode buffers back to the system once it is idle."""

from __future__ import annotations

import time
from collections.abc import Callable

from tornado.ioloop import PeriodicCallback

from phizer.linux import release_free_memory
from phizer.web import InFlight

IDLE_SECONDS = 2.0


class IdleTrim:
    """Releases free heap memory once after each busy spell, when no request
    has been in flight for ``idle_seconds``.

    Under load the next decode reuses the buffers the last one freed (no
    page faults); in a lull RSS falls back to what the caches hold.
    """

    def __init__(
        self,
        in_flight: InFlight,
        release: Callable[[], None] = release_free_memory,
        idle_seconds: float = IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._in_flight = in_flight
        self._release = release
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._released_after = 0  # requests finished at the last release

    def check(self) -> bool:
        """Release if the worker has gone idle since the last release."""
        flight = self._in_flight
        if flight.count or flight.finished == self._released_after:
            return False
        if self._clock() - flight.last_finish < self._idle_seconds:
            return False
        self._released_after = flight.finished
        self._release()
        return True

    def start(self) -> PeriodicCallback:
        callback = PeriodicCallback(self.check, self._idle_seconds * 1000 / 2)
        callback.start()
        return callback
