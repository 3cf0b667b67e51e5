"""Opening a file below a directory in one act, so no rename can widen it.

Checking a path (``realpath``) and then opening it are two walks: a local
process that swaps a directory for a symbolic link between them gets the
open to leave the root. Here every component is resolved relative to the
root's file descriptor by the same walk that opens the file:

- ``openat2(2)`` with ``RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`` where the
  kernel has it (Linux 5.6+): the kernel refuses, atomically, any step that
  leaves the root;
- else a walk of our own, one ``openat`` per component with ``O_NOFOLLOW``,
  reading each symbolic link met and resolving its target the same way.

Both follow the same rule: a relative symbolic link is followed while it
stays below the root; an absolute one, or one that climbs out, is refused
(``EXDEV``), as are more than 40 links in one path (``ELOOP``).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from collections.abc import Callable

# openat2 is 437 in the table shared by every architecture since Linux 5.1
# (alpha, which differs, is not listed: it gets the walk).
_OPENAT2 = 437
_OPENAT2_MACHINES = ("x86_64", "aarch64", "arm64", "i386", "i686", "armv7l", "riscv64", "ppc64le")
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_BENEATH = 0x08
MAX_LINKS = 40  # the kernel's own limit
# openat2 answers EAGAIN when a rename anywhere raced a ".." step; it is
# safe to try again, and a path that keeps losing the race is not found.
_RETRIES = 4

Opener = Callable[[int, str, int], int]


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


def _libc_syscall() -> Callable[..., int] | None:
    if platform.system() != "Linux" or platform.machine() not in _OPENAT2_MACHINES:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syscall = libc.syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    syscall.argtypes = [
        ctypes.c_long,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.POINTER(_OpenHow),
        ctypes.c_size_t,
    ]
    return syscall


_SYSCALL = _libc_syscall()


def openat2_beneath(dir_fd: int, path: str, flags: int) -> int:
    """``openat2(dir_fd, path, {flags, 0, RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS})``;
    raises ``OSError`` as ``os.open`` does."""
    if _SYSCALL is None:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
    how = _OpenHow(flags | os.O_CLOEXEC, 0, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
    encoded = os.fsencode(path)
    if b"\0" in encoded:
        raise ValueError("embedded null byte")  # as os.open says: C would cut the name there
    for _ in range(_RETRIES):
        fd = _SYSCALL(_OPENAT2, dir_fd, encoded, ctypes.byref(how), ctypes.sizeof(how))
        if fd >= 0:
            return int(fd)
        code = ctypes.get_errno()
        if code not in (errno.EAGAIN, errno.EINTR):
            break
    raise OSError(code, os.strerror(code), path)


def walk_beneath(dir_fd: int, path: str, flags: int) -> int:
    """The same rule as ``openat2_beneath``, one component at a time.

    Every step is an ``openat`` relative to a descriptor already held, with
    ``O_NOFOLLOW``: a symbolic link is never followed by the kernel, only
    read (``readlinkat``) and its target walked by this function, so a
    rename between two steps can change what is found but never where the
    walk may go."""
    pending = list(reversed(path.split("/")))
    stack = [os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)]
    links = 0
    try:
        while pending:
            name = pending.pop()
            if name in ("", "."):
                if pending:
                    continue
                name = "."  # "a/" or a link to ".": the directory itself
            elif name == "..":
                if len(stack) == 1:
                    raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), path)
                os.close(stack.pop())
                if pending:
                    continue
                name = "."
            last = not pending
            mode = flags if last else os.O_PATH | os.O_DIRECTORY
            try:
                fd = os.open(name, mode | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
            except OSError as err:
                # A link met with O_NOFOLLOW: ELOOP for the last component,
                # ENOTDIR (O_PATH|O_DIRECTORY opens the link, then refuses it)
                # on the way.
                if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                target = _link_target(name, stack[-1], err)
                links += 1
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path) from None
                if not target or target.startswith("/"):
                    raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), path) from None
                pending.extend(reversed(target.split("/")))
                continue
            if last:
                return fd
            stack.append(fd)
        # Only reached for an empty path: the root itself.
        raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    finally:
        for held in stack:
            os.close(held)


def _link_target(name: str, dir_fd: int, failure: OSError) -> str:
    """What the link ``name`` says, or ``failure`` again when it is no link
    (a plain file on the way, or a link swapped back since)."""
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError:
        raise failure from None


def _probe() -> Opener:
    """openat2 when this kernel (and any seccomp filter) lets it through."""
    root = os.open("/", os.O_PATH | os.O_CLOEXEC)
    try:
        os.close(openat2_beneath(root, ".", os.O_PATH))
    except OSError:
        # ENOSYS: no openat2; EPERM: a seccomp filter; EINVAL/E2BIG: flags unknown.
        return walk_beneath
    finally:
        os.close(root)
    return openat2_beneath


_chosen: Opener | None = None


def open_beneath(dir_fd: int, path: str, flags: int) -> int:
    """``path`` opened with ``flags`` below ``dir_fd``, never outside it;
    raises ``OSError`` (EXDEV for a way out, ELOOP for too many links)."""
    global _chosen
    if _chosen is None:
        _chosen = _probe()
    return _chosen(dir_fd, path, flags)
