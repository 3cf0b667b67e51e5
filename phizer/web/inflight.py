"""The requests one process is serving: what a graceful stop waits for."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class InFlight:
    """Counts requests in and out; a stopping server waits until none is left."""

    def __init__(self) -> None:
        self.count = 0
        self.finished = 0
        self.last_finish = 0.0  # time.monotonic() of the last request's end
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()
        # Called after each request ends (e.g. to give freed memory back).
        self.on_leave: list[Callable[[], None]] = []

    def enter(self) -> None:
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count = max(0, self.count - 1)
        self.finished += 1
        self.last_finish = time.monotonic()
        if self.count == 0:
            self._idle.set()
        for callback in self.on_leave:
            callback()

    async def wait_idle(self, timeout: float) -> bool:
        """True when every request finished within ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True
