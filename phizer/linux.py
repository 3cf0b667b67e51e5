"""Best-effort Linux process niceties (prctl(2), rlimits); no-ops where unsupported."""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import signal

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15


def _prctl(option: int, value: int | bytes) -> None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def set_process_name(name: str) -> None:
    """Shown by ``ps -o comm``, ``top`` and ``/proc/PID/comm`` (15 bytes at most)."""
    _prctl(_PR_SET_NAME, name.encode()[:15])


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies."""
    _prctl(_PR_SET_PDEATHSIG, sig)


def raise_open_file_limit(wanted: int) -> int:
    """Lift the soft limit on open files toward ``wanted`` (at most the hard
    limit); returns the limit in force. Each client connection is a file."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
        except (ValueError, OSError):
            return soft
        return ceiling
    return soft
