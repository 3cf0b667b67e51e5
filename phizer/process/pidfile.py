"""The pidfile: who holds it, writing it atomically, removing it at exit.

A pidfile is held only while it names a live phizer process. A file naming
a dead process, a zombie, a process that is not phizer (its pid was reused
after a crash or a reboot) or holding no pid at all is stale and is taken
over. Only the process that wrote the file removes it, and only while the
file still names that process: a forked child never does.
"""

from __future__ import annotations

import contextlib
import enum
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

PIDFILE_MODE = 0o644
# No kernel hands out a pid above this (the largest pid_max Linux allows).
PID_MAX_LIMIT = 2**22
_MAX_PID_TEXT = 16


class PidFileError(Exception):
    """The pidfile cannot be read, written or removed; ``str(err)`` says why."""


class PidFileBusy(PidFileError):
    def __init__(self, path: str, pid: int) -> None:
        super().__init__(f"phizer is already running (pid {pid}, pidfile {path})")
        self.pid = pid


@dataclass
class PidFile:
    path: str
    _written_by: int | None = field(default=None, init=False, repr=False)

    def check(self) -> str | None:
        """Raise ``PidFileBusy`` when a live phizer holds the file.

        Returns why an existing file is stale (to report the takeover), or
        ``None`` when there is no file.
        """
        text = self._read()
        if text is None:
            return None
        pid = parse_pid(text)
        if pid is None:
            return f"{self.path} holds no pid ({text.strip()[:_MAX_PID_TEXT]!r})"
        if pid == os.getpid():
            return f"{self.path} names this very process (pid {pid})"
        state = process_state(pid)
        if state is ProcessState.PHIZER:
            raise PidFileBusy(self.path, pid)
        if state is ProcessState.DEAD:
            return f"{self.path} names pid {pid}, which is not running"
        return f"{self.path} names pid {pid}, which is not phizer"

    def write(self, pid: int, owner: tuple[int, int] | None = None) -> None:
        """Atomically replace the file with ``pid``; ``owner`` is (uid, gid) to chown to.

        Readers see the old content or the new one, never a partial file.
        """
        directory, name = os.path.split(self.path)
        try:
            fd, temporary = tempfile.mkstemp(prefix=f".{name}.", dir=directory or ".")
        except OSError as err:
            raise PidFileError(f"cannot write pidfile {self.path}: {err.strerror}") from None
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(f"{pid}\n")
                handle.flush()
                os.fchmod(handle.fileno(), PIDFILE_MODE)
                if owner is not None:
                    os.fchown(handle.fileno(), *owner)
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except OSError as err:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise PidFileError(f"cannot write pidfile {self.path}: {err.strerror}") from None
        self._written_by = pid

    def remove(self) -> bool:
        """Remove the file if this process wrote it and it still names us."""
        pid = self._written_by
        if pid is None or pid != os.getpid():
            return False
        text = self._read()
        if text is None or parse_pid(text) != pid:
            return False  # gone, or taken over by someone else: not ours to remove
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return False
        except OSError as err:
            raise PidFileError(f"cannot remove pidfile {self.path}: {err.strerror}") from None
        self._written_by = None
        return True

    def _read(self) -> str | None:
        try:
            with open(self.path, "rb") as handle:
                data = handle.read(_MAX_PID_TEXT * 4)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise PidFileError(f"cannot read pidfile {self.path}: {err.strerror}") from None
        return data.decode("ascii", errors="replace")


def parse_pid(text: str) -> int | None:
    value = text.strip()
    if not value.isdecimal() or len(value) > _MAX_PID_TEXT:
        return None
    pid = int(value)
    return pid if 0 < pid <= PID_MAX_LIMIT else None


class ProcessState(enum.Enum):
    DEAD = "dead"
    OTHER = "alive, not phizer"
    PHIZER = "phizer"


def process_state(pid: int) -> ProcessState:
    """What runs as ``pid``, from ``/proc`` (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return ProcessState.DEAD
    except PermissionError:
        pass  # alive, owned by another user
    proc = Path(f"/proc/{pid}")
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes()
        comm = (proc / "comm").read_text().strip()
    except FileNotFoundError:
        return ProcessState.DEAD
    except OSError:
        return ProcessState.PHIZER  # alive but unreadable: assume the worst and refuse
    if stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]:
        return ProcessState.DEAD
    return ProcessState.PHIZER if is_phizer(cmdline, comm) else ProcessState.OTHER


def is_phizer(cmdline: bytes, comm: str) -> bool:
    """``phizer ...``, ``/usr/bin/phizer ...``, ``python -m phizer ...`` or a named child."""
    if comm == "phizer" or comm.startswith("phizer-"):
        return True
    arguments = cmdline.decode(errors="replace").split("\0")
    return any(os.path.basename(argument) == "phizer" for argument in arguments)
