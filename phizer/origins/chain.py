"""The configured origins as one: the master first, then every slave at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

from phizer.errors import NotFound, PhizerError
from phizer.origins.base import Origin


class OriginSet:
    """The master first; when it lacks the image, every slave in parallel."""

    def __init__(self, master: Origin | None, slaves: Sequence[Origin]) -> None:
        self.master = master
        self.slaves = tuple(slaves)

    async def fetch(self, path: str) -> bytes:
        failures: list[PhizerError] = []
        if self.master is not None:
            try:
                return await self.master.fetch(path)
            except PhizerError as err:
                failures.append(err)
        if self.slaves:
            try:
                return await _first_success([s.fetch(path) for s in self.slaves], failures)
            except PhizerError:
                pass
        raise _summarise(failures)


async def _first_success(attempts: list[Awaitable[bytes]], failures: list[PhizerError]) -> bytes:
    tasks = [asyncio.ensure_future(attempt) for attempt in attempts]
    try:
        for finished in asyncio.as_completed(tasks):
            try:
                return await finished
            except PhizerError as err:
                failures.append(err)
    finally:
        for task in tasks:
            task.cancel()
    raise failures[-1]


def _summarise(failures: list[PhizerError]) -> PhizerError:
    """404 only when every origin said so; otherwise the image may exist."""
    for failure in failures:
        if not isinstance(failure, NotFound):
            return failure
    return NotFound("image not found at any origin")
