"""A worker's answer passed on to the client as it arrives.

An original served untouched (a size at or above ``max_dimension``) may
be tens of MB. The front hands it on chunk by chunk instead of holding it
whole, and reads from the worker only as fast as the client takes it:
while more than ``HIGH_WATER`` bytes wait for the client, the transfer
from the worker is paused (the worker holds the original anyway, in its
cache). A body small enough for the front's cache is kept as well.

curl calls ``_head_line`` and ``_write`` from inside its socket handling
on the loop's thread: they only record and wake the consumer, which runs
in the handler's coroutine.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass

import pycurl
from tornado.httputil import HTTPHeaders, HTTPInputError, parse_response_start_line

from phizer.origins.base import InFlightBytes

# Bytes received from the worker and not yet taken by the client, past
# which the transfer pauses: a few of curl's reads, far below any original.
HIGH_WATER = 256 * 1024


@dataclass(frozen=True)
class Head:
    """The worker's status and headers."""

    code: int
    headers: HTTPHeaders


class Relay:
    """One worker response, read as the client takes it.

    ``attach`` goes in the request's ``prepare_curl_callback``; ``start``
    runs the transfer; ``head()`` then ``batches()`` give what arrived;
    ``stop()`` drops the rest. Whatever ends the transfer (its failure
    included) is raised by ``head()`` or ``batches()``, never lost.
    """

    def __init__(self, gathering: InFlightBytes) -> None:
        # Bodies are kept whole while this budget, shared by relays, has room
        # for their whole length (a body larger than it is never kept).
        self.gathering = gathering
        self._reserved = 0
        self.received = 0
        self._head: Head | None = None
        self._code: int | None = None
        self._headers = HTTPHeaders()
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._kept: list[bytes] | None = None  # see _head_line
        self._curl: pycurl.Curl | None = None
        self._paused = False
        self._stopped = False
        self._wake = asyncio.Event()
        self._transfer: asyncio.Future[object] | None = None

    # -- curl's side ----------------------------------------------------------

    def attach(self, curl: pycurl.Curl) -> None:
        self._curl = curl
        curl.setopt(pycurl.HEADERFUNCTION, self._head_line)
        curl.setopt(pycurl.WRITEFUNCTION, self._write)
        # Also called while nothing arrives: how a stop ends a transfer
        # still waiting for its head.
        curl.setopt(pycurl.NOPROGRESS, 0)
        curl.setopt(pycurl.XFERINFOFUNCTION, self._progress)

    def _progress(self, *_: int) -> int:
        return 1 if self._stopped else 0  # non-zero aborts the transfer

    def _head_line(self, raw: bytes) -> None:
        line = raw.decode("latin-1")
        if line.startswith("HTTP/"):
            # A new head (after a 1xx one): start over.
            try:
                self._code = parse_response_start_line(line.strip()).code
            except HTTPInputError:
                self._code = None
            self._headers = HTTPHeaders()
        elif line.strip():
            with contextlib.suppress(HTTPInputError):
                self._headers.parse_line(line)
        elif self._code is not None and self._code >= 200:
            self._head = Head(self._code, self._headers)
            self._gather(self._code, self._headers.get("Content-Length", ""))
            self._wake.set()

    def _gather(self, code: int, length: str) -> None:
        """Whether the body is gathered for the cache: an image whose length
        the budget all relays gather within has room for."""
        if code != 200 or not length.isdigit() or not self.gathering.take(int(length)):
            return
        self._reserved = int(length)
        self._kept = []

    def _write(self, chunk: bytes) -> int:
        if self._stopped:
            return 0  # anything but len(chunk) makes curl abort the transfer
        if self._queued >= HIGH_WATER:
            # curl keeps this chunk and passes it again once resumed.
            self._paused = True
            return pycurl.WRITEFUNC_PAUSE
        self._queue.append(chunk)
        self._queued += len(chunk)
        self.received += len(chunk)
        if self._kept is not None:
            if self.received <= self._reserved:
                self._kept.append(chunk)
            else:
                self._kept = None
        self._wake.set()
        return len(chunk)

    # -- the consumer's side --------------------------------------------------

    def start(self, transfer: Awaitable[object]) -> None:
        self._transfer = asyncio.ensure_future(transfer)
        self._transfer.add_done_callback(self._ended)

    def _ended(self, _: object) -> None:
        self._curl = None  # the client reuses the handle for other requests
        self._wake.set()

    @property
    def paused(self) -> bool:
        """Whether the transfer waits for the client to take what came."""
        return self._paused

    @property
    def started(self) -> bool:
        """Whether anything of the answer arrived (a retry would repeat it)."""
        return self._head is not None or self.received > 0

    @property
    def stopped(self) -> bool:
        """Whether the rest of the answer was given up (see ``stop``)."""
        return self._stopped

    async def head(self, timeout: float) -> Head:
        """The worker's status and headers, or what ended the transfer first."""
        assert self._transfer is not None
        deadline = asyncio.get_running_loop().time() + timeout
        while self._head is None and not self._transfer.done():
            self._wake.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)
        if self._head is None:
            self._transfer.result()  # raises the transfer's failure
            raise ConnectionError("worker closed the connection without an answer")
        return self._head

    async def batches(self) -> AsyncIterator[list[bytes]]:
        """What arrived since the last batch, until the body ends. The next
        batch is read once the consumer is back: it should have sent the last."""
        assert self._transfer is not None
        while True:
            if self._queue:
                batch = list(self._queue)
                self._queue.clear()
                self._queued = 0
                yield batch
                self._resume()
                continue
            if self._transfer.done():
                self._transfer.result()  # raises the transfer's failure
                return
            self._wake.clear()
            if not self._queue and not self._transfer.done():
                await self._wake.wait()

    def kept(self) -> bytes | None:
        """The whole body, when it was gathered (see ``_gather``); its
        reservation ends."""
        kept = b"".join(self._kept) if self._kept is not None else None
        self._kept = None
        self._let_go()
        return kept

    def _let_go(self) -> None:
        self.gathering.give_back(self._reserved)
        self._reserved = 0

    def stop(self) -> None:
        """The rest of the answer is not wanted: the transfer is aborted."""
        self._stopped = True
        self._queue.clear()
        self._kept = None
        self._let_go()
        self._resume()
        if self._transfer is not None:
            # Its end (an abort, as asked) is of no interest now.
            self._transfer.add_done_callback(_consume_failure)

    def _resume(self) -> None:
        if self._paused and self._curl is not None:
            self._paused = False
            # May call _write at once with what curl held while paused.
            with contextlib.suppress(pycurl.error):
                self._curl.pause(pycurl.PAUSE_CONT)


def _consume_failure(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()
