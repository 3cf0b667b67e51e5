"""The configured origins as one: the master first, then every slave at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

from phizer.errors import NotFound, PhizerError
from phizer.origins.base import Fetched, InFlightBytes, Origin, Validators


class OriginSet:
    """The master first; when it lacks the image, every slave in parallel."""

    def __init__(
        self,
        master: Origin | None,
        slaves: Sequence[Origin],
        in_flight: InFlightBytes,
    ) -> None:
        self.master = master
        self.slaves = tuple(slaves)
        # The budget the fetches count against, and requests using originals.
        self.in_flight = in_flight

    async def fetch(self, path: str, validators: Validators | None = None) -> Fetched:
        """The original, or (given the ``validators`` of a copy) that the copy
        is current: an origin that has the same version says so."""
        failures: list[PhizerError] = []
        if self.master is not None:
            try:
                return await self.master.fetch(path, validators)
            except PhizerError as err:
                failures.append(err)
        if self.slaves:
            attempts: list[Awaitable[Fetched]] = [
                slave.fetch(path, validators) for slave in self.slaves
            ]
            try:
                return await _first_success(attempts, failures)
            except PhizerError:
                pass
        raise _summarise(failures)


async def _first_success(
    attempts: list[Awaitable[Fetched]], failures: list[PhizerError]
) -> Fetched:
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
