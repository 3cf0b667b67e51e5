"""A local directory as an origin."""

from __future__ import annotations

import asyncio
import os
import stat

from phizer.config.loader import OriginSpec
from phizer.errors import NotFound, OriginError, SourceTooLarge
from phizer.origins.base import DEFAULT_MAX_BYTES, Fetched, Validators


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

    async def fetch(self, path: str, validators: Validators | None = None) -> Fetched:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._read, path, validators)

    def _read(self, path: str, validators: Validators | None) -> Fetched:
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
        current = Validators(etag=f'"{info.st_mtime_ns:x}-{info.st_size:x}"')
        if validators is not None and validators.etag == current.etag:
            os.close(fd)
            return Fetched(None, current)  # same mtime and size: unchanged
        if info.st_size > self._max_bytes:
            os.close(fd)
            raise SourceTooLarge(f"source image is larger than {self._max_bytes} bytes")
        with open(fd, "rb") as handle:
            data = handle.read(self._max_bytes + 1)  # the file may grow meanwhile
        if len(data) > self._max_bytes:
            raise SourceTooLarge(f"source image is larger than {self._max_bytes} bytes")
        return Fetched(data, current)
