"""A thread that keeps exchanging two paths, as a local attacker racing an open would.

``renameat2(RENAME_EXCHANGE)`` swaps a directory and a symbolic link in one
step, so every lookup sees one or the other; where the call is missing
(old libc, a filesystem without it) two pairs of ``os.rename`` do the same
job with a moment where the name is absent.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from types import TracebackType

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _renameat2() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


def exchange(first: str, second: str) -> bool:
    """Swap two names atomically; False when this system cannot."""
    function = _renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE):
        code = ctypes.get_errno()
        if code in (errno.ENOSYS, errno.EINVAL, errno.EPERM):
            return False
        raise OSError(code, os.strerror(code))
    return True


class Swapper:
    """Swaps ``first`` and ``second`` until stopped; ``swaps`` counts them."""

    def __init__(self, first: str, second: str) -> None:
        self.first = first
        self.second = second
        self.swaps = 0
        self.atomic = exchange(first, second) and exchange(first, second)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="swapper", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        spare = self.first + ".spare"
        try:
            while not self._stop.is_set():
                if self.atomic:
                    exchange(self.first, self.second)
                else:
                    os.rename(self.first, spare)
                    os.rename(self.second, self.first)
                    os.rename(spare, self.second)
                self.swaps += 1
        except BaseException as error:  # reported by __exit__
            self._error = error

    def __enter__(self) -> Swapper:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive(), "the swapper did not stop"
        if self._error is not None and kind is None:
            raise self._error
