"""Origins: where originals come from (HTTP servers or a local directory).

Each ``fetch`` returns the original's bytes or raises ``NotFound``,
``OriginError`` or ``OriginTimeout``.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Sequence
from typing import Protocol
from urllib.parse import quote

import pycurl
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from phizer import __version__
from phizer.config.loader import OriginSpec
from phizer.errors import NotFound, OriginError, OriginTimeout, PhizerError, SourceTooLarge
from phizer.transport import TransportFailure, fetch

_MISSING_STATUSES = (403, 404, 410)
DEFAULT_MAX_BYTES = 50 * 1024 * 1024


class Origin(Protocol):
    name: str

    async def fetch(self, path: str) -> bytes: ...


class HttpOrigin:
    """An HTTP(S) server; redirects are not followed (they could lead anywhere)."""

    def __init__(
        self,
        spec: OriginSpec,
        client: AsyncHTTPClient,
        connect_timeout: float,
        timeout: float,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        assert spec.host is not None
        self.name = spec.name
        host = f"[{spec.host}]" if ":" in spec.host else spec.host
        self._base = f"{spec.scheme}://{host}:{spec.port}{spec.root}"
        self._client = client
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._max_bytes = max_bytes

    def url_for(self, path: str) -> str:
        return self._base + quote(path, safe="/")

    async def fetch(self, path: str) -> bytes:
        sink = BoundedSink(self._max_bytes)
        request = HTTPRequest(
            self.url_for(path),
            follow_redirects=False,
            connect_timeout=self._connect_timeout,
            request_timeout=self._timeout,
            user_agent=f"phizer/{__version__}",
            prepare_curl_callback=sink.attach,
        )
        try:
            response = await fetch(self._client, request)
        except TransportFailure as failure:
            if sink.overflowed or failure.curl_errno == pycurl.E_FILESIZE_EXCEEDED:
                raise SourceTooLarge(self._too_large()) from None
            if failure.timed_out:
                raise OriginTimeout(f"origin {self.name} timed out") from None
            raise OriginError(f"origin {self.name} unreachable") from None
        if response.code == 200:
            return sink.data()
        if response.code in _MISSING_STATUSES:
            raise NotFound(f"not found at origin {self.name}")
        raise OriginError(f"origin {self.name} answered {response.code}")

    def _too_large(self) -> str:
        return f"source image is larger than {self._max_bytes} bytes"


class BoundedSink:
    """Collects a response body and aborts the transfer past ``max_bytes``.

    curl refuses a larger ``Content-Length`` before reading the body; a
    body without one (chunked, or compressed and inflated) is cut off as
    soon as it grows past the limit instead of being buffered whole.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.overflowed = False
        self._chunks: list[bytes] = []
        self._size = 0

    def attach(self, curl: pycurl.Curl) -> None:
        curl.setopt(pycurl.MAXFILESIZE_LARGE, self.max_bytes)
        curl.setopt(pycurl.WRITEFUNCTION, self.write)

    def write(self, chunk: bytes) -> int:
        self._size += len(chunk)
        if self._size > self.max_bytes:
            self.overflowed = True
            return 0  # anything but len(chunk) makes curl abort the transfer
        self._chunks.append(chunk)
        return len(chunk)

    def data(self) -> bytes:
        return b"".join(self._chunks)


class DirectoryOrigin:
    """Files below a local directory; nothing outside it is ever read."""

    def __init__(self, spec: OriginSpec, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        assert spec.directory is not None
        self.name = spec.name
        self.root = os.path.realpath(spec.directory)
        self._max_bytes = max_bytes

    def resolve(self, path: str) -> str:
        """The real file for ``path``, refusing anything that leaves the root."""
        candidate = os.path.realpath(os.path.join(self.root, path))
        if os.path.commonpath([candidate, self.root]) != self.root or candidate == self.root:
            raise NotFound(f"not found at origin {self.name}")
        return candidate

    async def fetch(self, path: str) -> bytes:
        return await asyncio.get_running_loop().run_in_executor(None, self._read, path)

    def _read(self, path: str) -> bytes:
        try:
            # O_NONBLOCK: opening a FIFO planted under the root must not hang.
            fd = os.open(self.resolve(path), os.O_RDONLY | os.O_NONBLOCK)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
            raise NotFound(f"not found at origin {self.name}") from None
        except OSError as err:
            raise OriginError(f"origin {self.name}: {err.strerror}") from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise NotFound(f"not found at origin {self.name}")
        if info.st_size > self._max_bytes:
            os.close(fd)
            raise SourceTooLarge(f"source image is larger than {self._max_bytes} bytes")
        with open(fd, "rb") as handle:
            data = handle.read(self._max_bytes + 1)  # the file may grow meanwhile
        if len(data) > self._max_bytes:
            raise SourceTooLarge(f"source image is larger than {self._max_bytes} bytes")
        return data


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


async def _first_success(attempts: list, failures: list[PhizerError]) -> bytes:
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


def build_origins(
    specs: Sequence[OriginSpec],
    client: AsyncHTTPClient,
    connect_timeout: float,
    timeout: float,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[Origin]:
    origins: list[Origin] = []
    for spec in specs:
        if spec.directory is not None:
            origins.append(DirectoryOrigin(spec, max_bytes))
        else:
            origins.append(HttpOrigin(spec, client, connect_timeout, timeout, max_bytes))
    return origins
