"""A local directory as an origin."""

from __future__ import annotations

import asyncio
import errno
import os
import stat

from phizer.config.loader import OriginSpec
from phizer.errors import NotFound, OriginError, SourceTooLarge
from phizer.origins.base import DEFAULT_MAX_BYTES, Fetched, Validators
from phizer.origins.beneath import open_beneath

# What an open below the root fails with when the path names nothing this
# origin serves: missing, not a directory on the way, a way out of the root
# (EXDEV), a link loop, a name too long, a socket or device (ENXIO, ENODEV).
_NOT_SERVED = frozenset(
    {
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EACCES,
        errno.EPERM,
        errno.EXDEV,
        errno.ELOOP,
        errno.ENAMETOOLONG,
        errno.ENXIO,
        errno.ENODEV,
        errno.EAGAIN,
        errno.EINVAL,
    }
)


class DirectoryOrigin:
    """Files below a local directory; nothing outside it is ever read.

    Each path is opened relative to the root's descriptor in one walk
    (``phizer.origins.beneath``): a symbolic link is followed only while it
    stays below the root, however the tree changes during the open."""

    def __init__(self, spec: OriginSpec, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        assert spec.directory is not None
        self.name = spec.name
        self.root = os.path.realpath(spec.directory)
        self._max_bytes = max_bytes

    async def fetch(self, path: str, validators: Validators | None = None) -> Fetched:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._read, path, validators)

    def _open(self, path: str) -> int:
        try:
            # The root is opened for every request, so replacing it (a deploy
            # that swaps the directory) is seen at once.
            root = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            raise OriginError(f"origin {self.name}: root directory unavailable") from err
        try:
            # O_NONBLOCK: opening a FIFO planted under the root must not hang.
            return open_beneath(root, path, os.O_RDONLY | os.O_NONBLOCK)
        except ValueError:  # a NUL in the name: no file has one
            raise NotFound(f"not found at origin {self.name}") from None
        except OSError as err:
            if err.errno in _NOT_SERVED:
                raise NotFound(f"not found at origin {self.name}") from None
            raise OriginError(f"origin {self.name}: {err.strerror}") from None
        finally:
            os.close(root)

    def _read(self, path: str, validators: Validators | None) -> Fetched:
        fd = self._open(path)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise NotFound(f"not found at origin {self.name}")
            current = Validators(etag=f'"{info.st_mtime_ns:x}-{info.st_size:x}"')
            if validators is not None and validators.etag == current.etag:
                return Fetched(None, current)  # same mtime and size: unchanged
            if info.st_size > self._max_bytes:
                raise SourceTooLarge(f"source image is larger than {self._max_bytes} bytes")
            with open(fd, "rb", closefd=False) as handle:
                data = handle.read(self._max_bytes + 1)  # the file may grow meanwhile
        except OSError as err:
            raise OriginError(f"origin {self.name}: {err.strerror}") from None
        finally:
            os.close(fd)
        if len(data) > self._max_bytes:
            raise SourceTooLarge(f"source image is larger than {self._max_bytes} bytes")
        return Fetched(data, current)
