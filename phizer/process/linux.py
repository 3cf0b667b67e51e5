"""Best-effort Linux process niceties (prctl(2), rlimits); no-ops where unsupported."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import resource
import signal

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15


@functools.cache
def _libc() -> ctypes.CDLL:
    # Looked up once: find_library runs ldconfig in a subprocess.
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _prctl(option: int, value: int | bytes) -> None:
    with contextlib.suppress(OSError, AttributeError):
        _libc().prctl(option, value, 0, 0, 0)


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


_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_allocator(threshold: int, trim_threshold: int | None = None) -> None:
    """Have glibc map allocations of ``threshold`` bytes or more on their own
    (returned to the system the moment they are freed) and give back free
    memory at the top of the heap beyond ``trim_threshold`` (default:
    ``threshold``) at once.

    Left to itself glibc raises its mmap threshold after large frees, up to
    32 MiB, and later buffers then come from a heap that only shrinks from
    the top: RSS would keep the high-water mark of every decode on top of
    the caches. A small threshold returns every buffer but makes each decode
    fault its buffers in afresh; a large one keeps them for the next decode
    and leaves returning them to ``release_free_memory``.
    """
    try:
        libc = _libc()
        libc.mallopt(_M_MMAP_THRESHOLD, threshold)
        libc.mallopt(_M_TRIM_THRESHOLD, threshold if trim_threshold is None else trim_threshold)
    except (OSError, AttributeError):
        pass


def release_free_memory() -> None:
    """Give every free page of the heap back to the system (malloc_trim(3))."""
    with contextlib.suppress(OSError, AttributeError):
        _libc().malloc_trim(0)
