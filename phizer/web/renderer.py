"""Renders off the event loop, each within a time budget (``decode_timeout``).

Pillow releases the GIL while it decodes, resamples and encodes, so a
render runs in a thread while the worker's loop goes on fetching and
answering. One render at a time has the worker's attention; one still
running after ``SLOW_AFTER`` seconds moves aside to a spare thread, and the
next render starts beside it. A render over ``decode_timeout`` fails its
request (504); its thread cannot be stopped and runs to the end, so while
every thread is held by such renders, new ones are refused at once (503,
``Retry-After``) instead of queueing behind them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from phizer.errors import DecodeTimeout, WorkerUnavailable

T = TypeVar("T")

# Seconds a render runs alone before the next one may start beside it:
# above nearly every render (tens of ms), far below any timeout.
SLOW_AFTER = 0.5
# Threads for slow renders beside the current one: each may hold a decode
# of up to max_source_pixels, and a core.
SPARE_THREADS = 2


class Renderer:
    """Runs ``fn(*args)`` in a render thread: ``await renderer.run(fn, *args)``.

    ``fn`` runs on another thread than the loop, beside at most
    ``spare`` slow others: what it shares with them must be thread-safe.
    """

    def __init__(
        self, timeout: float, spare: int = SPARE_THREADS, slow_after: float = SLOW_AFTER
    ) -> None:
        self.timeout = timeout
        self.slow_after = min(slow_after, timeout)
        self.threads = 1 + spare
        self.busy = 0  # threads running a render, late ones included
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="render")
        self._turn = asyncio.Lock()

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        async with self._turn:
            if self.busy >= self.threads:
                raise WorkerUnavailable("worker busy with slow images")
            deadline = loop.time() + self.timeout
            future = loop.run_in_executor(self._executor, fn, *args)
            self.busy += 1
            future.add_done_callback(self._finished)
            await asyncio.wait((future,), timeout=self.slow_after)
            if not future.done() and self.busy >= self.threads:
                # No thread is left for the next render: it waits its turn.
                await asyncio.wait((future,), timeout=deadline - loop.time())
        if not future.done():
            await asyncio.wait((future,), timeout=max(0.0, deadline - loop.time()))
        if not future.done():
            raise DecodeTimeout(f"image took more than {self.timeout:g} s to render")
        return future.result()

    def _finished(self, _: object) -> None:
        self.busy -= 1

    def close(self) -> None:
        """Start no more renders; those running finish in their threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)
