"""Leaving the terminal: python-daemon's ``DaemonContext``, the log file, startup signals.

``detach`` forks once more than ``DaemonContext`` does: the original process
stays in the foreground until the daemon reports over a pipe that it is
ready (pidfile written, privileges dropped) or why it failed. So ``phizer
--daemon`` exits 0 only once the pidfile exists, which is what a service
manager's ``Type=forking`` expects, and late startup errors still reach the
terminal with exit status 1.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import IO

import daemon

LOG_FILE_MODE = 0o640
DAEMON_UMASK = 0o022
STARTUP_TIMEOUT = 60.0
_READY = b"ready"
_ERROR = b"error\n"

SignalTarget = Callable[[int, FrameType | None], object] | None


class LogFileError(Exception):
    """The log file cannot be opened; ``str(err)`` says why."""


def _exit_cleanly(_signum: int, _frame: FrameType | None) -> None:
    # Unwinds through main(), which removes the pidfile, and exits with status 0.
    raise SystemExit(0)


def startup_signal_map() -> dict[int, SignalTarget]:
    """Signal handling until the supervisor installs its own (``None`` ignores).

    python-daemon's default turns SIGTERM into an exit with a message
    (status 1, which a service manager counts as a crash); here it stops
    cleanly with status 0. SIGHUP's default action would kill the process
    before it serves; a reload is meaningless before then, so it is ignored.
    """
    return {
        signal.SIGTERM: _exit_cleanly,
        signal.SIGINT: _exit_cleanly,
        signal.SIGHUP: None,
        signal.SIGTSTP: None,
        signal.SIGTTIN: None,
        signal.SIGTTOU: None,
    }


def hold_startup_signals() -> None:
    """Install ``startup_signal_map`` in this process (the foreground case)."""
    for signum, target in startup_signal_map().items():
        signal.signal(signum, signal.SIG_IGN if target is None else target)


def open_log_file(path: str, owner: tuple[int, int] | None = None) -> IO[bytes]:
    """Open ``path`` for appending; a file created here is chowned to ``owner``."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    try:
        try:
            fd = os.open(path, flags | os.O_EXCL, LOG_FILE_MODE)
            created = True
        except FileExistsError:
            fd = os.open(path, flags, LOG_FILE_MODE)
            created = False
        if created and owner is not None:
            os.fchown(fd, *owner)
    except OSError as err:
        raise LogFileError(f"cannot open log file {path}: {err.strerror}") from None
    return os.fdopen(fd, "ab", buffering=0)


def redirect_stderr(log_file: IO[bytes]) -> None:
    """Send this process's stderr, and so its children's, to ``log_file``."""
    sys.stderr.flush()
    os.dup2(log_file.fileno(), sys.stderr.fileno())


@dataclass
class Startup:
    """How the starting process reports success or failure to whoever waits.

    In the foreground nobody waits (``fd`` is ``None``); in a daemon the
    original process reads the other end of the pipe.
    """

    fd: int | None = None

    def ready(self) -> None:
        self._send(_READY)

    def failed(self, message: str) -> None:
        print(f"phizer: {message}", file=sys.stderr, flush=True)
        self._send(_ERROR + message.encode(errors="replace"))

    def _send(self, data: bytes) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, data)
        except OSError:
            pass  # the foreground process is gone; nobody to tell
        finally:
            os.close(self.fd)
            self.fd = None


def detach(
    files_preserve: Sequence[object], log_file: IO[bytes] | None, log_name: str | None
) -> Startup:
    """Become a daemon; only the daemon returns.

    The original process waits for the daemon's report, prints an error
    if there is one, and exits with the status. ``files_preserve`` (the
    listening sockets) stays open; stderr goes to ``log_file``, or to
    /dev/null like stdin and stdout.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(write_fd)
        raise SystemExit(_wait_for_daemon(pid, read_fd, log_name))
    os.close(read_fd)
    startup = Startup(write_fd)
    context = daemon.DaemonContext(
        # Explicit: the default stays in the foreground when the parent is
        # init (pid 1), so under systemd Type=forking nothing would fork.
        detach_process=True,
        working_directory="/",
        umask=DAEMON_UMASK,
        files_preserve=[*files_preserve, write_fd],
        stderr=log_file,
        signal_map=startup_signal_map(),
    )
    try:
        context.open()
    except BaseException as err:
        startup.failed(f"cannot become a daemon: {err}")
        os._exit(1)
    return startup


def _wait_for_daemon(pid: int, read_fd: int, log_name: str | None) -> int:
    where = f"see {log_name}" if log_name else "run it without --daemon to see why"
    report = _read_until_eof(read_fd, STARTUP_TIMEOUT)
    os.waitpid(pid, 0)
    if report is None:
        message = f"no word from the daemon after {STARTUP_TIMEOUT:g}s; {where}"
    elif report.startswith(_READY):
        return 0
    elif report.startswith(_ERROR):
        message = report.removeprefix(_ERROR).decode(errors="replace")
    else:
        message = f"the daemon exited during startup; {where}"
    print(f"phizer: {message}", file=sys.stderr)
    return 1


def _read_until_eof(fd: int, timeout: float) -> bytes | None:
    """Everything written to the pipe until every writer closed it; ``None`` on timeout."""
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)
